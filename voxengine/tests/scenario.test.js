'use strict';
/**
 * scenario.js driven event by event through the fake VoxEngine runtime: call setup, hostile
 * control requests, end_call, transfers and their failure modes, the agent's WebSocket, logging.
 * The HTTP contract itself (codes, precedence, duplicates) is replayed in contract.test.js.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { FakeVoxEngine, AgentsEvents, CONTROL_URL, SCENARIO_STORAGE: STORAGE, hmacHex } = require('./fake_voxengine');

const CALLER = '+15550001111';
const CALLEE = '+15550002222';
const SECRET = 'scenario-test-secret';
const CONTRACT_CODES = [
  'method_not_allowed', 'body_too_large', 'bad_json', 'bad_request', 'unknown_action', 'missing_signature',
  'bad_signature', 'stale_signature', 'transfer_in_progress', 'call_ended',
];

let idCounter = 0;
const newId = () => `id-${++idCounter}`;

async function startCall(options = {}) {
  const rt = new FakeVoxEngine(Object.assign({}, options, { storage: Object.assign({}, STORAGE, options.storage) }));
  await rt.startCall({ callerid: CALLER, destination: CALLEE });
  return rt;
}

/** What every test must leave true: no handler error, no double hangup/terminate/close. */
function assertClean(rt) {
  assert.deepEqual(rt.errors.map(String), []);
  assert.deepEqual(rt.violations, []);
  assert.ok(rt.count('terminate') <= 1);
}

const graceMs = (rt) => rt.evaluate('TERMINATE_GRACE_MS');
const endCall = (rt, id = newId(), headers = {}) => rt.control({ id, action: 'end_call' }, headers);
const transfer = (rt, id = newId(), summary) => rt.control(summary === undefined ? { id, action: 'call_transfer' } : { id, action: 'call_transfer', summary }, {});
const indexOf = (rt, type, filter = {}) => rt.effects.findIndex((e) => e.type === type && Object.entries(filter).every(([k, v]) => e[k] === v));

/** Runs the grace timer and checks the session ended exactly once. */
async function assertTerminatesOnce(rt) {
  await rt.advance(graceMs(rt));
  assert.equal(rt.count('terminate'), 1);
  await rt.advance(60000);
  assert.equal(rt.count('terminate'), 1);
}

// --- call setup -----------------------------------------------------------------------------------

test('setup: answers, creates the agent from ApplicationStorage, bridges media, starts it with the control URL', async () => {
  const rt = await startCall();
  assert.deepEqual(rt.modules.sort(), ['AMD', 'ApplicationStorage', 'Cartesia']);
  assert.equal(rt.count('answer', { leg: 'caller' }), 1);
  const created = rt.effects.find((e) => e.type === 'createAgentsClient').parameters;
  assert.equal(created.apiKey, 'test-api-key');
  assert.equal(created.agentId, 'agent_test');
  assert.equal(typeof created.cartesiaVersion, 'string');
  assert.equal(typeof created.onWebSocketClose, 'function');
  assert.equal(rt.count('sendMediaBetween', { a: 'caller', b: 'agent' }), 1);
  const started = rt.effects.find((e) => e.type === 'agentStart').parameters;
  assert.deepEqual(JSON.parse(JSON.stringify(started)), {
    metadata: { vox_session_control_url: CONTROL_URL, from: CALLER, to: CALLEE },
  });
  assert.ok(indexOf(rt, 'answer') < indexOf(rt, 'createAgentsClient'));
  assert.ok(indexOf(rt, 'sendMediaBetween') < indexOf(rt, 'agentStart'));
  assert.equal(rt.count('record'), 0, 'recording is off by default');
  assert.equal(rt.count('hangup'), 0);
  assert.equal(rt.pendingTimers(), 0);
  assertClean(rt);
});

test('setup: RECORD_CALLS = true records the caller leg in stereo', async () => {
  const source = fs.readFileSync(path.join(__dirname, '..', 'scenario.js'), 'utf8');
  assert.ok(source.includes('const RECORD_CALLS = false;'));
  const rt = await startCall({ source: source.replace('const RECORD_CALLS = false;', 'const RECORD_CALLS = true;') });
  const recorded = rt.effects.filter((e) => e.type === 'record');
  assert.equal(recorded.length, 1);
  assert.equal(recorded[0].leg, 'caller');
  assert.equal(recorded[0].parameters.stereo, true);
  assertClean(rt);
});

test('setup: the control URL is logged only as origin and fingerprint, never its secret path', async () => {
  const rt = await startCall();
  const logs = rt.logs.join('\n');
  assert.ok(!logs.includes('TOKENSECRET') && !logs.includes('SESSIONSECRET'), logs);
  const fingerprint = crypto.createHash('sha256').update(CONTROL_URL).digest('hex').slice(0, 12);
  assert.ok(logs.includes(`https://203.0.113.10:12092/…#${fingerprint}`), logs);
});

for (const [label, storage, key] of [
  ['TRANSFER_NUMBER is missing', { TRANSFER_NUMBER: undefined }, 'TRANSFER_NUMBER'],
  ['CARTESIA_API_KEY is blank', { CARTESIA_API_KEY: '   ' }, 'CARTESIA_API_KEY'],
]) {
  test(`setup: when ${label} the call is hung up and the session terminated, without an agent`, async () => {
    const rt = await startCall({ storage });
    assert.equal(rt.count('createAgentsClient'), 0);
    assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
    assert.ok(rt.logs.some((line) => line.includes(key)), rt.logs.join('\n'));
    await assertTerminatesOnce(rt);
    assertClean(rt);
  });
}

test('setup: ApplicationStorage failing ends the call cleanly', async () => {
  const rt = await startCall({ storageError: 'storage unavailable' });
  assert.equal(rt.count('createAgentsClient'), 0);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('setup: the agent client failing to connect ends the call cleanly', async () => {
  const rt = await startCall({ agentError: 'Cartesia unavailable' });
  assert.equal(rt.count('sendMediaBetween'), 0);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('setup: the caller hanging up while the agent connects closes the new client without starting it', async () => {
  const rt = await startCall({ holdAgent: true });
  rt.caller.remoteHangup();
  await rt.settle();
  await rt.releaseAgent();
  assert.equal(rt.count('agentStart'), 0);
  assert.equal(rt.count('sendMediaBetween'), 0);
  assert.equal(rt.count('agentClose'), 1);
  assert.equal(rt.count('hangup'), 0, 'the caller is already gone');
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('setup: control requests before the call is set up are refused with no effect', async () => {
  const rt = new FakeVoxEngine({ storage: STORAGE });
  await rt.start();
  assert.deepEqual(endCall(rt), { ok: false, error: 'call_ended' });
  assert.equal(rt.effects.length, 0);
  assertClean(rt);
});

test('setup: the agent asking to clear its audio clears the media buffer', async () => {
  const rt = await startCall();
  rt.agent.fire(AgentsEvents.Clear, { payload: { event: 'clear' } });
  await rt.settle();
  assert.equal(rt.count('clearMediaBuffer'), 1);
  assertClean(rt);
});

// --- hostile control requests -------------------------------------------------------------------

test('control: hostile requests never throw, always get a contract refusal, and change nothing', async () => {
  const rt = await startCall();
  const setupEffects = rt.effects.length;
  const deep = '['.repeat(8000) + ']'.repeat(8000);
  const payloads = [
    undefined,
    null,
    {},
    { method: 'POST' },
    { method: 'POST', content: 42 },
    { method: 'POST', content: { id: 'a', action: 'end_call' } },
    { method: 'POST', content: null, headers: null },
    { method: 'POST', content: '{}', headers: 'X-Idempotency-Key: a' },
    { method: 'POST', content: '{"id":"a","action":"end_call"}', headers: [null, 1, { key: 1, value: 2 }, { key: 'X-Idempotency-Key' }, { key: 'X-Idempotency-Key', value: 'b' }] },
    { method: 'POST', content: '{"id":"a","action":"end_call"}', headers: { 'X-Idempotency-Key': 'b' } },
    { method: 'POST', content: deep, headers: [] },
    { method: 'POST', content: '\ud800\udfff\ud800', headers: [] },
    { method: 'POST', content: '{"id":"a","action":"dance","summary":"' + '\ud800'.repeat(5) + '"}', headers: [] },
    { method: 'POST', content: 'x'.repeat(5 * 1024 * 1024), headers: [] },
    { method: ['POST'], content: '{}', headers: [] },
    { method: { toUpperCase: () => 'POST' }, content: '{}', headers: [] },
  ];
  for (const payload of payloads) {
    const raw = rt.rawHttp(payload);
    assert.equal(typeof raw, 'string');
    const response = JSON.parse(raw);
    assert.equal(response.ok, false, raw);
    assert.ok(CONTRACT_CODES.includes(response.error), raw);
  }
  await rt.settle();
  assert.equal(rt.effects.length, setupEffects, 'no telephony effect');
  assert.deepEqual(endCall(rt, 'still-works'), { ok: true, id: 'still-works', action: 'end_call' });
  assertClean(rt);
});

test('control: a __proto__ key in the body pollutes nothing', async () => {
  const rt = await startCall();
  const raw = rt.http({ body: '{"__proto__":{"polluted":true,"action":"end_call"},"id":"p1","action":"call_transfer","constructor":{"prototype":{"x":1}}}' });
  assert.deepEqual(JSON.parse(raw), { ok: true, id: 'p1', action: 'call_transfer' });
  assert.equal(rt.evaluate('({}).polluted'), undefined);
  assert.equal(rt.evaluate('({}).x'), undefined);
  assertClean(rt);
});

test('control: headers delivered as a plain object are read like the documented array', async () => {
  const rt = await startCall();
  const body = JSON.stringify({ id: 'h1', action: 'end_call' });
  assert.deepEqual(JSON.parse(rt.http({ body, headers: { 'X-IDEMPOTENCY-KEY': 'other' }, headerShape: 'object' })), { ok: false, error: 'bad_request' });
  assert.deepEqual(JSON.parse(rt.http({ body, headers: { 'X-Idempotency-Key': 'h1' }, headerShape: 'object' })), { ok: true, id: 'h1', action: 'end_call' });
  assertClean(rt);
});

// --- end_call -------------------------------------------------------------------------------------

test('end_call: hangs up once, closes the agent once, terminates once after the grace period', async () => {
  const rt = await startCall();
  const id = newId();
  assert.deepEqual(endCall(rt, id), { ok: true, id, action: 'end_call' });
  await rt.settle(); // our hangup comes back as Disconnected; the agent's close as onWebSocketClose
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assert.equal(rt.count('agentClose'), 1);
  assert.equal(rt.count('terminate'), 0, 'not inside the HTTP handler: the response must go out first');
  for (let i = 0; i < 3; i++) assert.deepEqual(endCall(rt, id), { ok: true, id, action: 'end_call', duplicate: true });
  await rt.advance(graceMs(rt) - 1);
  assert.equal(rt.count('terminate'), 0);
  await rt.advance(1);
  assert.equal(rt.count('terminate'), 1);
  assert.equal(rt.count('hangup'), 1);
  assert.ok(!rt.logs.some((line) => line.includes('agent WebSocket')), 'our own close is not a failure');
  assertClean(rt);
});

test('end_call: another end_call with a new id after the first is call_ended, no second hangup', async () => {
  const rt = await startCall();
  endCall(rt);
  await rt.settle();
  assert.deepEqual(endCall(rt), { ok: false, error: 'call_ended' });
  assert.deepEqual(transfer(rt), { ok: false, error: 'call_ended' });
  await rt.settle();
  assert.equal(rt.count('hangup'), 1);
  assert.equal(rt.count('callPSTN'), 0);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('caller hangs up: the session ends once and later actions are call_ended', async () => {
  const rt = await startCall();
  rt.caller.remoteHangup();
  await rt.settle();
  assert.equal(rt.count('agentClose'), 1);
  assert.deepEqual(endCall(rt), { ok: false, error: 'call_ended' });
  assert.deepEqual(transfer(rt), { ok: false, error: 'call_ended' });
  await rt.settle();
  assert.equal(rt.count('hangup'), 0, 'never hang up a leg that is already gone');
  assert.equal(rt.count('callPSTN'), 0);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

// --- call_transfer --------------------------------------------------------------------------------

test('transfer: dials TRANSFER_NUMBER from PSTN_CALLER_ID; on answer the agent is dropped and the caller bridged', async () => {
  const rt = await startCall();
  const id = newId();
  assert.deepEqual(transfer(rt, id, 'Wants a refund for order 1234'), { ok: true, id, action: 'call_transfer' });
  assert.deepEqual(rt.effects.filter((e) => e.type === 'callPSTN').map((e) => [e.number, e.callerid]), [['+15550003333', '+15550004444']]);
  assert.ok(rt.logs.some((line) => line.includes('Wants a refund for order 1234')), 'summary logged');
  assert.equal(rt.count('agentClose'), 0, 'the agent stays with the caller while the target rings');
  assert.equal(rt.count('stopMediaBetween'), 0);

  rt.consult.remoteAnswer();
  await rt.settle();
  assert.deepEqual(rt.effects.filter((e) => e.type === 'say').map((e) => [e.leg, e.text]), [['consult', 'Wants a refund for order 1234']], 'the summary is whispered to the target');
  assert.equal(rt.count('agentClose'), 0, 'the caller keeps the agent during the whisper');
  rt.consult.playbackFinished();
  await rt.settle();
  assert.equal(rt.count('stopMediaBetween', { a: 'caller', b: 'agent' }), 1);
  assert.equal(rt.count('agentClose'), 1);
  assert.equal(rt.count('sendMediaBetween', { a: 'caller', b: 'consult' }), 1);
  assert.ok(indexOf(rt, 'stopMediaBetween') < indexOf(rt, 'sendMediaBetween', { b: 'consult' }));
  assert.equal(rt.count('hangup'), 0, 'our own close of the agent does not end the call');

  assert.deepEqual(transfer(rt, id), { ok: true, id, action: 'call_transfer', duplicate: true });
  assert.deepEqual(endCall(rt), { ok: false, error: 'call_ended' }, 'after the handoff the agent no longer controls the call');
  await rt.settle();
  assert.equal(rt.count('callPSTN'), 1);
  assert.equal(rt.count('hangup'), 0);
  assert.equal(rt.count('terminate'), 0);
  assertClean(rt);
});

test('transfer: retries of the same call_transfer dial exactly once', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id, 'x');
  for (let i = 0; i < 5; i++) assert.equal(transfer(rt, id, 'x').duplicate, true);
  rt.consult.remoteAnswer();
  await rt.settle();
  assert.equal(transfer(rt, id, 'x').duplicate, true);
  assert.equal(rt.count('callPSTN'), 1);
  assertClean(rt);
});

test('transfer: a second transfer with a new id while the first rings is transfer_in_progress', async () => {
  const rt = await startCall();
  transfer(rt);
  assert.deepEqual(transfer(rt), { ok: false, error: 'transfer_in_progress' });
  await rt.settle();
  assert.equal(rt.count('callPSTN'), 1);
  assertClean(rt);
});

for (const [label, code, reason, expected] of [
  ['busy (486)', 486, 'Busy Here', /busy/i],
  ['unavailable (480)', 480, 'Temporarily Unavailable', /could not connect/i],
]) {
  test(`transfer: agent gone, then target ${label}: the caller is told, then hung up when the message has played`, async () => {
    const rt = await startCall();
    transfer(rt);
    rt.agent.remoteClose(1000, 'agent ended its session');
    await rt.settle();
    rt.consult.remoteFail(code, reason);
    await rt.settle();
    const said = rt.effects.filter((e) => e.type === 'say');
    assert.equal(said.length, 1);
    assert.equal(said[0].leg, 'caller');
    assert.match(said[0].text, expected);
    assert.ok(indexOf(rt, 'agentClose') < indexOf(rt, 'say'), 'the agent is silenced first');
    assert.equal(rt.count('hangup'), 0, 'not before the message is heard');
    assert.deepEqual(endCall(rt), { ok: false, error: 'call_ended' });
    assert.equal(rt.count('agentCustom'), 0, 'nothing is sent to a gone agent');

    rt.caller.playbackFinished();
    await rt.settle();
    assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
    assert.equal(rt.count('hangup', { leg: 'consult' }), 0, 'the failed leg is not hung up again');
    assert.equal(rt.pendingTimers(), 1, 'only the terminate timer is left: the ring and announcement timers were cancelled');
    await assertTerminatesOnce(rt);
    assert.equal(rt.count('hangup'), 1, 'the announcement timer was cancelled');
    assertClean(rt);
  });
}

test('transfer: agent gone, target busy, and PlaybackFinished never comes: the caller is hung up after the announcement timeout', async () => {
  const rt = await startCall();
  transfer(rt);
  rt.agent.remoteClose();
  rt.consult.remoteFail(486, 'Busy Here');
  await rt.settle();
  await rt.advance(rt.evaluate('ANNOUNCEMENT_TIMEOUT_MS') - 1);
  assert.equal(rt.count('hangup'), 0);
  await rt.advance(1);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  rt.caller.playbackFinished(); // late: changes nothing
  await assertTerminatesOnce(rt);
  assert.equal(rt.count('hangup'), 1);
  assertClean(rt);
});

test('transfer: if dialling throws, the agent is told (failed, error) and keeps the caller', async () => {
  const rt = await startCall({ throwOn: { callPSTN: 'invalid number' } });
  const id = newId();
  assert.equal(transfer(rt, id).ok, true, 'accepted: the effect started and failed afterwards');
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [{ vox_event: 'action_outcome', id, action: 'call_transfer', status: 'failed', destination: 'default', attempt: 1, reason: 'error' }]);
  assert.equal(rt.count('say'), 0);
  assert.equal(rt.count('hangup'), 0);
  assert.equal(rt.count('agentClose'), 0);
  assert.equal(rt.hearing('caller'), 'agent');
  assert.ok(rt.logs.some((line) => line.includes('dial transfer target failed: invalid number')), rt.logs.join('\n'));
  assert.equal(rt.pendingTimers(), 0);
  assertClean(rt);
});

test('transfer: agent gone and the failure message cannot be played: the caller is hung up at once', async () => {
  const rt = await startCall({ throwOn: { say: 'TTS unavailable' } });
  transfer(rt);
  rt.agent.remoteClose();
  rt.consult.remoteFail(486, 'Busy Here');
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assert.equal(rt.pendingTimers(), 1, 'only the terminate timer');
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('transfer: the caller hanging up mid-transfer hangs up the ringing leg and says nothing', async () => {
  const rt = await startCall();
  transfer(rt);
  rt.caller.remoteHangup();
  await rt.settle(); // our hangup of the ringing leg comes back as Failed 487: not a "transfer failed"
  assert.equal(rt.count('hangup', { leg: 'consult' }), 1);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 0);
  assert.equal(rt.count('say'), 0);
  assert.equal(rt.count('agentClose'), 1);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('transfer: end_call during a transfer hangs up both legs once and announces nothing', async () => {
  const rt = await startCall();
  transfer(rt);
  const id = newId();
  assert.deepEqual(endCall(rt, id), { ok: true, id, action: 'end_call' });
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'consult' }), 1);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assert.equal(rt.count('say'), 0);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('transfer: the caller hanging up after the handoff hangs up the target', async () => {
  const rt = await startCall();
  transfer(rt);
  rt.consult.remoteAnswer();
  await rt.settle();
  rt.caller.remoteHangup();
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'consult' }), 1);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 0);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('transfer: the target hanging up after the handoff hangs up the caller', async () => {
  const rt = await startCall();
  transfer(rt);
  rt.consult.remoteAnswer();
  await rt.settle();
  rt.consult.remoteHangup();
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assert.equal(rt.count('hangup', { leg: 'consult' }), 0);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

// --- the agent's WebSocket ------------------------------------------------------------------------

test('agent: its WebSocket closing unexpectedly ends the call once', async () => {
  const rt = await startCall();
  rt.agent.remoteClose(1006, 'abnormal closure');
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assert.ok(rt.logs.some((line) => line.includes('agent WebSocket closed (1006)')), rt.logs.join('\n'));
  rt.agent.fire(AgentsEvents.WebSocketError, { payload: {} });
  await rt.settle();
  assert.equal(rt.count('hangup'), 1);
  assert.deepEqual(endCall(rt), { ok: false, error: 'call_ended' });
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('agent: a WebSocketError ends the call once, and the close that follows changes nothing', async () => {
  const rt = await startCall();
  rt.agent.fire(AgentsEvents.WebSocketError, { payload: { message: 'reset' } });
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assert.equal(rt.count('agentClose'), 1);
  rt.agent.remoteClose();
  await rt.settle();
  assert.equal(rt.count('hangup'), 1);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

test('agent: leaving during a transfer does not abort the transfer', async () => {
  const rt = await startCall();
  transfer(rt);
  rt.agent.remoteClose(1000, 'agent ended its session');
  await rt.settle();
  assert.equal(rt.count('hangup'), 0);
  rt.consult.remoteAnswer();
  await rt.settle();
  assert.equal(rt.count('sendMediaBetween', { a: 'caller', b: 'consult' }), 1);
  assert.equal(rt.count('hangup'), 0);
  assert.equal(rt.count('terminate'), 0);
  assertClean(rt);
});

test('agent: leaving during a transfer that then fails still tells the caller and hangs up', async () => {
  const rt = await startCall();
  transfer(rt);
  rt.agent.remoteClose(1000, 'agent ended its session');
  rt.consult.remoteFail(603, 'Decline');
  await rt.settle();
  assert.equal(rt.count('say', { leg: 'caller' }), 1);
  rt.caller.playbackFinished();
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  await assertTerminatesOnce(rt);
  assertClean(rt);
});

// --- logging and signatures -----------------------------------------------------------------------

test('log: X-Traceparent and X-Tracestate are written with the action and id', async () => {
  const rt = await startCall();
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const tracestate = 'vendor=opaque,other=1';
  rt.control({ id: 'trace-1', action: 'end_call' }, { 'X-Traceparent': traceparent, 'X-Tracestate': tracestate });
  const line = rt.logs.find((l) => l.includes('id=trace-1'));
  assert.ok(line, rt.logs.join('\n'));
  assert.match(line, /action=end_call/);
  assert.ok(line.includes(`traceparent=${traceparent}`), line);
  assert.ok(line.includes(`tracestate=${tracestate}`), line);
  assertClean(rt);
});

test('log: without trace headers no trace fields are written; refusals are logged with their code', async () => {
  const rt = await startCall();
  rt.control({ id: 'plain-1', action: 'end_call' });
  const line = rt.logs.find((l) => l.includes('id=plain-1'));
  assert.ok(line && !line.includes('traceparent') && !line.includes('tracestate'), line);
  rt.http({ body: '{"id":"bad id","action":"end_call"}', headers: { 'X-Traceparent': '00-abc' } });
  const refused = rt.logs[rt.logs.length - 1];
  assert.match(refused, /action=- id=- result=bad_request traceparent=00-abc/);
  rt.control({ id: 'late-1', action: 'call_transfer' });
  assert.match(rt.logs[rt.logs.length - 1], /action=call_transfer id=late-1 result=call_ended$/);
  assertClean(rt);
});

test('log: summaries keep their letters but lose line breaks and bidi controls', async () => {
  const rt = await startCall();
  transfer(rt, 'sum-1', 'Müller wants\nFAKE\u2028LINE \u202Eevil');
  const line = rt.logs.find((l) => l.includes('summary:'));
  assert.ok(line.includes('Müller wants?FAKE?LINE ?evil'), line);
  assertClean(rt);
});

test('log: header values cannot forge log lines or flood the log', async () => {
  const rt = await startCall();
  const before = rt.logs.length;
  rt.control({ id: 'inj-1', action: 'end_call' }, { 'X-Traceparent': 'abc\n[cartesia-control] FORGED\r\u001b[31m', 'X-Tracestate': 'z'.repeat(5000) });
  const written = rt.logs.slice(before);
  assert.ok(written.every((line) => !/[\u0000-\u001f]/.test(line)), JSON.stringify(written));
  assert.ok(written.every((line) => line.length < 1500), 'bounded');
  assertClean(rt);
});

test('signing: the receiver clock is Date.now(): a signature ages out after 300 s', async () => {
  const rt = await startCall({ storage: { VOX_CONTROL_SECRET: SECRET }, nowSeconds: 1700000000 });
  const body = JSON.stringify({ id: 'clock-1', action: 'end_call' });
  const t = 1700000000;
  const header = { 'X-Vox-Signature': `t=${t},v1=${hmacHex(SECRET, `${t}.${body}`)}` };
  await rt.advance(301 * 1000);
  assert.deepEqual(JSON.parse(rt.http({ body, headers: header })), { ok: false, error: 'stale_signature' });
  assert.equal(rt.count('hangup'), 0);
  assertClean(rt);
});

test('signing: if Crypto.hmac_sha256 does not return hex, signed requests fail closed and it is logged', async () => {
  const base64Hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest('base64');
  const rt = await startCall({ storage: { VOX_CONTROL_SECRET: SECRET }, hmac: base64Hmac });
  assert.ok(rt.logs.some((line) => line.includes('ERROR: Crypto.hmac_sha256')), rt.logs.join('\n'));
  const body = JSON.stringify({ id: 'b64-1', action: 'end_call' });
  const t = 1700000000;
  const response = JSON.parse(rt.http({ body, headers: { 'X-Vox-Signature': `t=${t},v1=${hmacHex(SECRET, `${t}.${body}`)}` } }));
  assert.deepEqual(response, { ok: false, error: 'bad_signature' });
  assert.equal(rt.count('hangup'), 0);
  assertClean(rt);
});

test('signing: a throwing Crypto.hmac_sha256 fails closed within the contract', async () => {
  const rt = await startCall({ storage: { VOX_CONTROL_SECRET: SECRET }, hmac: () => { throw new Error('no crypto'); } });
  const body = JSON.stringify({ id: 'thr-1', action: 'end_call' });
  const response = JSON.parse(rt.http({ body, headers: { 'X-Vox-Signature': `t=1700000000,v1=${'0'.repeat(64)}` } }));
  assert.deepEqual(response, { ok: false, error: 'bad_signature' });
  assertClean(rt);
});

test('signing: the self-test does not complain when the primitive is right', async () => {
  const rt = await startCall({ storage: { VOX_CONTROL_SECRET: SECRET } });
  assert.ok(!rt.logs.some((line) => line.includes('ERROR')), rt.logs.join('\n'));
  assert.ok(rt.logs.some((line) => line.includes('must be signed')));
});

// --- pure helpers ---------------------------------------------------------------------------------

test('helpers: byte and code point counting agree with Node on awkward strings', () => {
  const rt = new FakeVoxEngine({ storage: STORAGE });
  const exceeds = rt.evaluate('exceedsUtf8Bytes');
  const codePoints = rt.evaluate('codePointLength');
  const samples = ['', 'a', '\u00e9', '\u20ac', '\u{1F600}', '\ud800', '\udc00', 'a\ud800b', '\u{1F600}\ud83d', 'x'.repeat(20)];
  let seed = 7;
  const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  for (let i = 0; i < 300; i++) {
    let s = '';
    for (let j = 0; j < 12; j++) s += String.fromCharCode(Math.floor(random() * 0xffff));
    samples.push(s);
  }
  for (const s of samples) {
    const bytes = Buffer.byteLength(s, 'utf8'); // lone surrogates become U+FFFD, as on the wire
    assert.equal(exceeds(s, bytes), false, JSON.stringify(s));
    if (bytes > 0) assert.equal(exceeds(s, bytes - 1), true, JSON.stringify(s));
    assert.equal(codePoints(s), [...s].length, JSON.stringify(s));
  }
});

test('helpers: constantTimeEqual and normalizeHeaders', () => {
  const rt = new FakeVoxEngine({ storage: STORAGE });
  const equal = rt.evaluate('constantTimeEqual');
  assert.equal(equal('abc', 'abc'), true);
  assert.equal(equal('abc', 'abd'), false);
  assert.equal(equal('abc', 'ab'), false);
  assert.equal(equal('abc', undefined), false);
  const normalize = rt.evaluate('normalizeHeaders');
  const fromArray = normalize([{ key: 'X-Foo', value: ' 1 ' }, { key: 'x-foo', value: '2' }, { key: 'X-Empty', value: '  ' }]);
  assert.deepEqual({ ...fromArray }, { 'x-foo': '1' });
  assert.deepEqual({ ...normalize({ 'X-Bar': 'b', 'X-Num': 5 }) }, { 'x-bar': 'b' });
  assert.deepEqual({ ...normalize(undefined) }, {});
});
