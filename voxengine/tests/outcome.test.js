'use strict';
/**
 * Transfer outcomes (docs/control-contract.md, "Outcome events: VoxEngine → agent"): after an
 * accepted call_transfer the scenario reports ringing / connected / failed to the agent with
 * AgentsClient.custom, keeps the caller with the agent on every failure, whispers the summary to
 * the target only, and falls back to the spoken apology only when the agent is gone.
 * The shared cases of contract/outcome_cases.json are replayed in outcome_contract.test.js.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { FakeVoxEngine, AgentsEvents, VoiceList, SCENARIO_STORAGE: STORAGE } = require('./fake_voxengine');

const SUMMARY = 'Caller wants help with a bill.';

let idCounter = 0;
const newId = () => `tr-${++idCounter}`;

async function startCall(options = {}) {
  const rt = new FakeVoxEngine(Object.assign({}, options, { storage: Object.assign({}, STORAGE, options.storage) }));
  await rt.startCall();
  return rt;
}

function assertClean(rt) {
  assert.deepEqual(rt.errors.map(String), []);
  assert.deepEqual(rt.violations, []);
  assert.ok(rt.count('terminate') <= 1);
}

const transfer = (rt, id = newId(), summary = SUMMARY) => rt.control({ id, action: 'call_transfer', summary });
const endCall = (rt, id = newId()) => rt.control({ id, action: 'end_call' });
const phase = (rt) => rt.evaluate('session.phase');
const indexOf = (rt, type, filter = {}) => rt.effects.findIndex((e) => e.type === type && Object.entries(filter).every(([k, v]) => e[k] === v));
const endCallCompleted = (id, offset = null) =>
  ({ vox_event: 'action_outcome', id, action: 'end_call', status: 'completed', playout_offset_ms: offset });
// Every transfer outcome names its destination and attempt ("default", 1: TRANSFER_NUMBER, one
// attempt); `connected` carries playout_offset_ms (null without media events in these tests) and
// the AMD verdict (a person answering is detected HUMAN; see fake_voxengine.js).
const outcome = (id, status, extra = {}) =>
  Object.assign({ vox_event: 'action_outcome', id, action: 'call_transfer', status, destination: 'default', attempt: 1 },
    status === 'connected' ? { amd: 'human', playout_offset_ms: null } : {}, extra);
const saidTo = (rt, leg) => rt.effects.filter((e) => e.type === 'say' && e.leg === leg).map((e) => e.text);
const heardBy = (rt, leg) => rt.audio.filter((a) => a.leg === leg).map((a) => a.source);

/** The caller is back with the agent, in control, and nothing was said or hung up on their side. */
function assertCallerWithAgent(rt) {
  assert.equal(phase(rt), 'active');
  assert.equal(rt.hearing('caller'), 'agent');
  assert.equal(rt.count('agentClose'), 0);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 0);
  assert.deepEqual(saidTo(rt, 'caller'), []);
  assert.equal(rt.count('terminate'), 0);
}

/** Log lines that name a transfer milestone of `id`. */
const milestoneLogs = (rt, id) => rt.logs.filter((line) => new RegExp(`transfer ${id} (ringing|connected|failed)`).test(line));

// --- failures while the target rings: the caller stays with the agent -------------------------------

for (const [code, reason] of [
  [486, 'busy'],
  [600, 'busy'],
  [408, 'no_answer'],
  [480, 'no_answer'],
  [603, 'rejected'],
  [404, 'error'],
  [487, 'error'], // a 487 we did not cause (our own hangup is told apart by our own flag)
  [402, 'error'],
]) {
  test(`outcome: Failed ${code} after Ringing → ringing, then failed ${reason} with sip_code ${code}; the caller stays with the agent`, async () => {
    const rt = await startCall();
    const id = newId();
    assert.deepEqual(transfer(rt, id), { ok: true, id, action: 'call_transfer' });
    assert.equal(rt.consult.ring(), true);
    await rt.settle();
    assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing')]);
    assert.equal(rt.hearing('caller'), 'agent', 'the caller hears the agent while the target rings');
    rt.consult.remoteFail(code, 'Some reason');
    await rt.settle();
    assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing'), outcome(id, 'failed', { reason, sip_code: code })]);
    assertCallerWithAgent(rt);
    assert.equal(rt.count('hangup'), 0, 'the failed leg is not hung up');
    assert.equal(rt.pendingTimers(), 0, 'the ring timer is cancelled');
    assert.equal(milestoneLogs(rt, id).length, 2, rt.logs.join('\n'));
    assertClean(rt);
  });
}

test('outcome: a Failed without a usable code is failed error without sip_code', async () => {
  for (const code of [undefined, null, 'busy', 1.5, 99, 700, true]) {
    const rt = await startCall();
    const id = newId();
    transfer(rt, id);
    rt.consult.remoteFail(code, 'odd');
    await rt.settle();
    assert.deepEqual(rt.outcomes(), [outcome(id, 'failed', { reason: 'error' })], String(code));
    assertClean(rt);
  }
  const rt = await startCall();
  transfer(rt, 'str-code');
  rt.consult.remoteFail('486', 'Busy Here'); // a numeric string, defensively read as the number
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome('str-code', 'failed', { reason: 'busy', sip_code: 486 })]);
});

test('outcome: no answer within TRANSFER_RING_TIMEOUT_S (default 30 s) → the leg is hung up once, failed no_answer', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.ring();
  rt.consult.ring(); // the network may signal progress again: ringing is sent once
  await rt.settle();
  await rt.advance(29999);
  assert.equal(rt.count('hangup'), 0);
  assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing')]);
  await rt.advance(1);
  assert.equal(rt.count('hangup', { leg: 'consult' }), 1);
  // Our hangup of the ringing leg comes back as Failed 487: not a second outcome.
  assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing'), outcome(id, 'failed', { reason: 'no_answer' })]);
  assertCallerWithAgent(rt);
  assert.equal(rt.consult.remoteAnswer(), false, 'a hung-up leg cannot answer');
  await rt.advance(60000);
  assert.equal(rt.outcomes().length, 2);
  assert.equal(milestoneLogs(rt, id).length, 2);
  assertClean(rt);
});

test('outcome: the dialled leg disconnecting before it answered → failed error, no sip_code', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.remoteHangup();
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome(id, 'failed', { reason: 'error' })]);
  assertCallerWithAgent(rt);
  assertClean(rt);
});

test('outcome: dial error (callPSTN throws) → failed error at once; a second transfer dials normally', async () => {
  const rt = await startCall();
  rt.throwNext('callPSTN', 'Invalid number');
  const first = newId();
  assert.deepEqual(transfer(rt, first), { ok: true, id: first, action: 'call_transfer' });
  assert.deepEqual(rt.outcomes(), [outcome(first, 'failed', { reason: 'error' })], 'reported from inside the HTTP handler');
  assertCallerWithAgent(rt);
  const second = newId();
  assert.deepEqual(transfer(rt, second), { ok: true, id: second, action: 'call_transfer' });
  assert.equal(rt.consults.length, 1);
  rt.consult.remoteAnswer();
  rt.consult.playbackFinished();
  await rt.settle();
  assert.deepEqual(rt.outcomes().map((o) => [o.id, o.status]), [[first, 'failed'], [second, 'connected']]);
  assert.equal(rt.hearing('caller'), 'consult');
  assertClean(rt);
});

test('outcome: custom() throwing is taken as the agent gone: the caller hears the apology and is hung up', async () => {
  const rt = await startCall();
  transfer(rt);
  rt.throwNext('custom', 'socket closed');
  rt.consult.remoteFail(486, 'Busy Here');
  await rt.settle();
  assert.deepEqual(rt.outcomes(), []);
  assert.equal(saidTo(rt, 'caller').length, 1);
  assert.match(saidTo(rt, 'caller')[0], /busy/i);
  rt.caller.playbackFinished();
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assertClean(rt);
});

// --- answered: whisper to the target only, then the bridge ----------------------------------------

test('outcome: answered → the summary is whispered to the target only; PlaybackFinished → connected, then the agent is detached, then the bridge', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.ring();
  rt.consult.remoteAnswer();
  await rt.settle();
  assert.deepEqual(saidTo(rt, 'consult'), [SUMMARY]);
  assert.equal(rt.effects.find((e) => e.type === 'say').parameters, undefined, 'no voice set: the platform default');
  assert.equal(rt.hearing('consult'), `say:${SUMMARY}`);
  assert.equal(rt.hearing('caller'), 'agent', 'the caller keeps talking to the agent during the whisper');
  assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing')], 'connected only after the whisper');
  assert.equal(phase(rt), 'transferring');
  assert.deepEqual(transfer(rt), { ok: false, error: 'transfer_in_progress' });

  rt.consult.playbackFinished();
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing'), outcome(id, 'connected')]);
  const custom = rt.effects.findIndex((e) => e.type === 'agentCustom' && e.parameters.metadata.status === 'connected');
  assert.ok(custom < indexOf(rt, 'stopMediaBetween', { a: 'caller', b: 'agent' }), 'connected is sent while the agent is attached');
  assert.ok(indexOf(rt, 'stopMediaBetween', { a: 'caller', b: 'agent' }) < indexOf(rt, 'agentClose'));
  assert.ok(indexOf(rt, 'agentClose') < indexOf(rt, 'sendMediaBetween', { a: 'caller', b: 'consult' }));
  assert.equal(rt.hearing('caller'), 'consult');
  assert.equal(rt.hearing('consult'), 'caller');
  assert.deepEqual(heardBy(rt, 'caller'), ['agent', null, 'consult'], 'the caller never heard the whisper');
  assert.deepEqual(heardBy(rt, 'consult'), [`say:${SUMMARY}`, null, 'caller'], 'the target heard the whisper before the bridge');
  assert.equal(phase(rt), 'transferred');
  assert.equal(rt.pendingTimers(), 0, 'ring and whisper timers cancelled');
  assert.deepEqual(endCall(rt), { ok: false, error: 'call_ended' });
  assert.equal(milestoneLogs(rt, id).length, 2);
  assertClean(rt);
});

test('outcome: the whisper never finishing → bridged after TRANSFER_WHISPER_TIMEOUT_S (default 15 s); the bridge replaces the whisper', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.remoteAnswer();
  await rt.settle();
  await rt.advance(14999);
  assert.deepEqual(rt.outcomes(), []);
  assert.equal(rt.hearing('caller'), 'agent');
  await rt.advance(1);
  assert.deepEqual(rt.outcomes(), [outcome(id, 'connected')]);
  assert.equal(rt.hearing('caller'), 'consult');
  assert.equal(rt.hearing('consult'), 'caller', 'the bridge replaces the playback');
  assert.equal(rt.consult.playbackFinished(), false, 'the replaced playback reports nothing');
  await rt.advance(60000);
  assert.equal(rt.outcomes().length, 1);
  assert.equal(rt.count('hangup'), 0);
  assertClean(rt);
});

test('outcome: PlaybackFinished with an error still completes the transfer', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.remoteAnswer();
  rt.consult.playbackFinished('TTS error');
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome(id, 'connected')]);
  assert.ok(rt.logs.some((line) => line.includes('whisper playback ended with an error: TTS error')));
  assertClean(rt);
});

test('outcome: say() throwing on the target leg → bridged at once without a whisper', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.throwNext('say', 'TTS unavailable');
  rt.consult.remoteAnswer();
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome(id, 'connected')]);
  assert.equal(rt.hearing('caller'), 'consult');
  assert.equal(rt.pendingTimers(), 0);
  assertClean(rt);
});

for (const [label, storage, summary] of [
  ['TRANSFER_WHISPER=off', { TRANSFER_WHISPER: 'off' }, SUMMARY],
  ['TRANSFER_WHISPER=" OFF "', { TRANSFER_WHISPER: ' OFF ' }, SUMMARY],
  ['an empty summary', {}, ''],
  ['no summary field', {}, undefined],
]) {
  test(`outcome: ${label} → no whisper: connected and the bridge as soon as the target answers`, async () => {
    const rt = await startCall({ storage });
    const id = newId();
    rt.control(summary === undefined ? { id, action: 'call_transfer' } : { id, action: 'call_transfer', summary });
    rt.consult.ring();
    rt.consult.remoteAnswer();
    await rt.settle();
    assert.equal(rt.count('say'), 0);
    assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing'), outcome(id, 'connected')]);
    assert.equal(rt.hearing('caller'), 'consult');
    assert.equal(rt.pendingTimers(), 0);
    assertClean(rt);
  });
}

test('outcome: a summary over 1500 characters is whispered cut to 1500 UTF-16 units, never inside a surrogate pair', async () => {
  const long = 'a'.repeat(1499) + '\u{1F600}' + 'b'.repeat(400); // the emoji straddles unit 1500
  const rt = await startCall();
  assert.equal(transfer(rt, newId(), long).ok, true);
  rt.consult.remoteAnswer();
  await rt.settle();
  assert.deepEqual(saidTo(rt, 'consult'), ['a'.repeat(1499)]);
  const plain = 'c'.repeat(2000);
  const whisper = rt.evaluate('whisperText');
  assert.equal(whisper(plain), 'c'.repeat(1500));
  assert.equal(whisper('c'.repeat(1500)), 'c'.repeat(1500));
  assert.equal(whisper(''), '');
  assertClean(rt);
});

test('outcome: the target hanging up during the whisper → failed target_hung_up; the caller is back with the agent', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.ring();
  rt.consult.remoteAnswer();
  await rt.settle();
  rt.consult.remoteHangup();
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing'), outcome(id, 'failed', { reason: 'target_hung_up' })]);
  assertCallerWithAgent(rt);
  assert.equal(rt.count('sendMediaBetween', { b: 'consult' }), 0, 'never bridged');
  assert.equal(rt.count('hangup'), 0, 'the target is already gone');
  assert.equal(rt.pendingTimers(), 0, 'the whisper timer is cancelled');
  await rt.advance(60000);
  assert.equal(rt.outcomes().length, 2);
  assertClean(rt);
});

test('outcome: connected without a Ringing first is just connected', async () => {
  const rt = await startCall({ storage: { TRANSFER_WHISPER: 'off' } });
  const id = newId();
  transfer(rt, id);
  rt.consult.remoteAnswer();
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome(id, 'connected')]);
  assertClean(rt);
});

// --- the session ending while the target rings ----------------------------------------------------

test('outcome: the caller hanging up while the target rings → failed caller_hung_up before the agent is closed; the dial is cancelled', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.ring();
  rt.caller.remoteHangup();
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing'), outcome(id, 'failed', { reason: 'caller_hung_up' })]);
  assert.ok(indexOf(rt, 'agentCustom') < indexOf(rt, 'agentClose'));
  assert.equal(rt.count('hangup', { leg: 'consult' }), 1);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 0);
  await rt.advance(1000);
  assert.equal(rt.count('terminate'), 1);
  await rt.advance(60000);
  assert.equal(rt.outcomes().length, 2, 'the ring timer died with the session');
  assertClean(rt);
});

test('outcome: end_call while the target rings → failed cancelled before the agent is closed; both legs hung up once', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.ring();
  await rt.settle();
  assert.deepEqual(endCall(rt, 'end-1'), { ok: true, id: 'end-1', action: 'end_call' });
  await rt.settle();
  // The transfer's cancellation first, then end_call's own `completed` (no media events: offset unknown).
  assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing'), outcome(id, 'failed', { reason: 'cancelled' }), endCallCompleted('end-1')]);
  assert.ok(indexOf(rt, 'agentCustom', {}) < indexOf(rt, 'agentClose'));
  assert.equal(rt.count('hangup', { leg: 'consult' }), 1);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  await rt.advance(61000);
  assert.equal(rt.count('terminate'), 1);
  assert.equal(rt.outcomes().length, 3);
  assertClean(rt);
});

test('outcome: end_call or the caller hanging up during the whisper ends the transfer as cancelled / caller_hung_up', async () => {
  for (const [how, reason] of [['end_call', 'cancelled'], ['caller', 'caller_hung_up']]) {
    const rt = await startCall();
    const id = newId();
    transfer(rt, id);
    rt.consult.remoteAnswer();
    await rt.settle();
    if (how === 'end_call') endCall(rt);
    else rt.caller.remoteHangup();
    await rt.settle();
    const transferOutcomes = rt.outcomes().filter((o) => o.action === 'call_transfer');
    assert.deepEqual(transferOutcomes, [outcome(id, 'failed', { reason })], how);
    assert.equal(rt.outcomes().length, how === 'end_call' ? 2 : 1, how);
    assert.equal(rt.count('hangup', { leg: 'consult' }), 1, how);
    assert.equal(rt.count('sendMediaBetween', { b: 'consult' }), 0, how);
    await rt.advance(60000);
    assert.equal(rt.count('terminate'), 1);
    assertClean(rt);
  }
});

// --- the agent gone while the target rings --------------------------------------------------------

test('outcome: agent gone while ringing, then busy → no outcome after it left; the caller hears the apology and is hung up', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.ring();
  await rt.settle();
  rt.agent.remoteClose(1006, 'abnormal closure');
  rt.agent.fire(AgentsEvents.WebSocketError, { payload: {} });
  await rt.settle();
  assert.equal(rt.count('hangup'), 0, 'the transfer carries on');
  assert.equal(rt.logs.filter((line) => line.includes('agent WebSocket')).length, 1, 'the loss is logged once');
  rt.consult.remoteFail(486, 'Busy Here');
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing')]);
  assert.equal(saidTo(rt, 'caller').length, 1);
  assert.match(saidTo(rt, 'caller')[0], /busy/i);
  assert.equal(phase(rt), 'announcing');
  rt.caller.playbackFinished();
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  await rt.advance(1000);
  assert.equal(rt.count('terminate'), 1);
  assertClean(rt);
});

test('outcome: agent gone while ringing, then no answer by the timeout → the generic apology and a hang-up', async () => {
  const rt = await startCall({ storage: { TRANSFER_RING_TIMEOUT_S: '5' } });
  transfer(rt);
  rt.agent.remoteClose();
  await rt.settle();
  await rt.advance(5000);
  assert.equal(rt.count('hangup', { leg: 'consult' }), 1);
  assert.match(saidTo(rt, 'caller')[0], /could not connect/i);
  assert.deepEqual(rt.outcomes(), []);
  await rt.advance(rt.evaluate('ANNOUNCEMENT_TIMEOUT_MS'));
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assertClean(rt);
});

test('outcome: agent gone while ringing, then answered → whisper and bridge as usual, nothing sent to the gone agent', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.ring();
  await rt.settle();
  rt.agent.remoteClose(1000, 'agent ended its session');
  await rt.settle();
  rt.consult.remoteAnswer();
  await rt.settle();
  assert.deepEqual(saidTo(rt, 'consult'), [SUMMARY]);
  rt.consult.playbackFinished();
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [outcome(id, 'ringing')]);
  assert.equal(rt.hearing('caller'), 'consult');
  assert.equal(phase(rt), 'transferred');
  assert.equal(rt.count('hangup'), 0);
  assertClean(rt);
});

test('outcome: agent gone during the whisper, then the target hangs up → the apology and a hang-up, nothing sent', async () => {
  const rt = await startCall();
  const id = newId();
  transfer(rt, id);
  rt.consult.remoteAnswer();
  await rt.settle();
  rt.agent.fire(AgentsEvents.WebSocketError, { payload: {} });
  await rt.settle();
  assert.equal(rt.count('hangup'), 0);
  rt.consult.remoteHangup();
  await rt.settle();
  assert.deepEqual(rt.outcomes(), []);
  assert.match(saidTo(rt, 'caller')[0], /could not connect/i);
  assert.ok(rt.logs.some((line) => line === `[cartesia-control] transfer ${id} failed destination=default attempt=1 reason=target_hung_up; agent not told (gone)`), rt.logs.join('\n'));
  rt.caller.playbackFinished();
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assert.equal(rt.count('hangup', { leg: 'consult' }), 0);
  await rt.advance(1000);
  assert.equal(rt.count('terminate'), 1);
  assertClean(rt);
});

// --- another transfer after a failed one --------------------------------------------------------

test('outcome: after a failed transfer the agent may transfer again with a new id; the old leg changes nothing', async () => {
  const rt = await startCall();
  const first = newId();
  transfer(rt, first);
  rt.consult.remoteFail(486, 'Busy Here');
  await rt.settle();
  const oldLeg = rt.consult;
  assert.deepEqual(transfer(rt, first), { ok: true, id: first, action: 'call_transfer', duplicate: true }, 'a retry of the first is a duplicate, no second dial');
  assert.equal(rt.consults.length, 1);

  const second = newId();
  assert.deepEqual(transfer(rt, second), { ok: true, id: second, action: 'call_transfer' });
  assert.equal(rt.consults.length, 2);
  assert.notEqual(rt.consult, oldLeg);
  oldLeg.emit('Call.Disconnected', {}); // a stray late event of the old leg
  await rt.settle();
  rt.consult.ring();
  rt.consult.remoteAnswer();
  rt.consult.playbackFinished();
  await rt.settle();
  assert.deepEqual(rt.outcomes(), [
    outcome(first, 'failed', { reason: 'busy', sip_code: 486 }),
    outcome(second, 'ringing'),
    outcome(second, 'connected'),
  ]);
  assert.equal(rt.hearing('caller'), 'consult2');
  rt.consult.remoteHangup();
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1, 'the target hanging up after the handoff ends the call');
  assertClean(rt);
});

test('outcome: after a failed transfer the call behaves as before it (end_call, the agent leaving)', async () => {
  const rt = await startCall();
  transfer(rt);
  rt.consult.remoteFail(603, 'Decline');
  await rt.settle();
  rt.agent.remoteClose();
  await rt.settle();
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1, 'the agent leaving an active call ends it');
  assert.equal(rt.outcomes().length, 1);
  await rt.advance(1000);
  assert.equal(rt.count('terminate'), 1);
  assertClean(rt);
});

// --- ApplicationStorage ---------------------------------------------------------------------------

test('settings: TRANSFER_RING_TIMEOUT_S and TRANSFER_WHISPER_TIMEOUT_S accept plain decimal seconds', async () => {
  const rt = await startCall({ storage: { TRANSFER_RING_TIMEOUT_S: ' 0.5 ', TRANSFER_WHISPER_TIMEOUT_S: '2' } });
  const id = newId();
  transfer(rt, id);
  await rt.advance(499);
  assert.equal(rt.count('hangup'), 0);
  await rt.advance(1);
  assert.deepEqual(rt.outcomes(), [outcome(id, 'failed', { reason: 'no_answer' })]);
  const next = newId();
  transfer(rt, next);
  rt.consult.remoteAnswer();
  await rt.settle();
  await rt.advance(1999);
  assert.equal(rt.outcomes().length, 1);
  await rt.advance(1);
  assert.deepEqual(rt.outcomes()[1], outcome(next, 'connected'));
  assert.ok(rt.logs.some((line) => line.includes('transfer: ring timeout 0.5 s, whisper on (timeout 2 s, voice default)')), rt.logs.join('\n'));
  assertClean(rt);
});

for (const bad of ['abc', '0', '-5', '1e3', '30s', '121', 'Infinity', 'NaN', '0x10', '.5', '5.', '1,5']) {
  test(`settings: TRANSFER_RING_TIMEOUT_S=${JSON.stringify(bad)} is logged and the 30 s default used`, async () => {
    const rt = await startCall({ storage: { TRANSFER_RING_TIMEOUT_S: bad } });
    assert.ok(rt.logs.some((line) => line.includes('TRANSFER_RING_TIMEOUT_S') && line.includes('using 30')), rt.logs.join('\n'));
    const id = newId();
    transfer(rt, id);
    await rt.advance(29999);
    assert.equal(rt.outcomes().length, 0);
    await rt.advance(1);
    assert.deepEqual(rt.outcomes(), [outcome(id, 'failed', { reason: 'no_answer' })]);
    assertClean(rt);
  });
}

test('settings: a bad TRANSFER_WHISPER_TIMEOUT_S (or one over 60) and a bad TRANSFER_WHISPER are logged; the defaults apply', async () => {
  for (const timeout of ['soon', '61', '0']) {
    const rt = await startCall({ storage: { TRANSFER_WHISPER_TIMEOUT_S: timeout, TRANSFER_WHISPER: 'maybe' } });
    assert.ok(rt.logs.some((line) => line.includes('TRANSFER_WHISPER_TIMEOUT_S') && line.includes('using 15')), timeout);
    assert.ok(rt.logs.some((line) => line.includes('TRANSFER_WHISPER "maybe"') && line.includes('using on')));
    const id = newId();
    transfer(rt, id);
    rt.consult.remoteAnswer();
    await rt.settle();
    assert.equal(saidTo(rt, 'consult').length, 1, 'whisper on');
    await rt.advance(14999);
    assert.equal(rt.outcomes().length, 0);
    await rt.advance(1);
    assert.deepEqual(rt.outcomes(), [outcome(id, 'connected')]);
    assertClean(rt);
  }
});

test('settings: blank values are the defaults, silently', async () => {
  const rt = await startCall({ storage: { TRANSFER_RING_TIMEOUT_S: ' ', TRANSFER_WHISPER: '', TRANSFER_WHISPER_TIMEOUT_S: '  ', TRANSFER_WHISPER_VOICE: '' } });
  assert.ok(!rt.logs.some((line) => line.includes('using')), rt.logs.join('\n'));
  assert.ok(rt.logs.some((line) => line.includes('transfer: ring timeout 30 s, whisper on (timeout 15 s, voice default)')));
  assertClean(rt);
});

for (const [name, expected] of [
  ['Amazon.en_GB_Amy', VoiceList.Amazon.en_GB_Amy],
  ['VoiceList.Amazon.Neural.en_US_Joanna', VoiceList.Amazon.Neural.en_US_Joanna],
  [' Google.en_US_Neural2_C ', VoiceList.Google.en_US_Neural2_C],
]) {
  test(`settings: TRANSFER_WHISPER_VOICE=${JSON.stringify(name)} is passed to say as {voice}`, async () => {
    const rt = await startCall({ storage: { TRANSFER_WHISPER_VOICE: name } });
    transfer(rt);
    rt.consult.remoteAnswer();
    await rt.settle();
    const said = rt.effects.find((e) => e.type === 'say');
    assert.equal(said.leg, 'consult');
    assert.equal(said.parameters.voice, expected);
    assertClean(rt);
  });
}

for (const name of ['Amazon.nobody', 'Nope', '__proto__', 'Amazon.__proto__.x', 'constructor', 'Amazon..en_GB_Amy']) {
  test(`settings: TRANSFER_WHISPER_VOICE=${JSON.stringify(name)} is not a voice: logged, the default voice used`, async () => {
    const rt = await startCall({ storage: { TRANSFER_WHISPER_VOICE: name } });
    assert.ok(rt.logs.some((line) => line.includes('TRANSFER_WHISPER_VOICE') && line.includes('default voice')), rt.logs.join('\n'));
    transfer(rt);
    rt.consult.remoteAnswer();
    await rt.settle();
    assert.equal(rt.effects.find((e) => e.type === 'say').parameters, undefined);
    assertClean(rt);
  });
}

test('settings: values that would forge log lines are neutralised', async () => {
  const rt = await startCall({ storage: { TRANSFER_RING_TIMEOUT_S: '5\n[cartesia-control] FORGED', TRANSFER_WHISPER_VOICE: 'x\u2028y' } });
  assert.ok(rt.logs.every((line) => !/[\n\r\u2028]/.test(line)), JSON.stringify(rt.logs));
  assertClean(rt);
});

// --- logging --------------------------------------------------------------------------------------

test('log: each milestone is logged once, with id, reason and sip_code, and no secret', async () => {
  const rt = await startCall({ storage: { VOX_CONTROL_SECRET: 'super-secret-value' } });
  const body = JSON.stringify({ id: 'log-1', action: 'call_transfer', summary: 'x' });
  const t = 1700000000;
  const { hmacHex } = require('./fake_voxengine');
  rt.http({ body, headers: { 'X-Vox-Signature': `t=${t},v1=${hmacHex('super-secret-value', `${t}.${body}`)}` } });
  rt.consult.ring();
  rt.consult.ring();
  rt.consult.remoteFail(486, 'Busy\nHere');
  await rt.settle();
  const lines = milestoneLogs(rt, 'log-1');
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.match(lines[0], /^\[cartesia-control\] transfer log-1 ringing destination=default attempt=1; agent told$/);
  assert.match(lines[1], /^\[cartesia-control\] transfer log-1 failed destination=default attempt=1 reason=busy sip_code=486 \(Busy\?Here\); agent told$/);
  const all = rt.logs.join('\n');
  for (const secret of ['super-secret-value', 'TOKENSECRET', 'SESSIONSECRET', 'test-api-key']) assert.ok(!all.includes(secret), secret);
  assertClean(rt);
});

// --- pure helpers ---------------------------------------------------------------------------------

test('helpers: failure reasons and sip codes map as the contract says', () => {
  const rt = new FakeVoxEngine({ storage: STORAGE });
  const reasonFor = rt.evaluate('failureReasonForCode');
  const sipCodeOf = rt.evaluate('sipCodeOf');
  const table = { 486: 'busy', 600: 'busy', 408: 'no_answer', 480: 'no_answer', 603: 'rejected', 404: 'error', 487: 'error', 500: 'error', 503: 'error' };
  for (const [code, reason] of Object.entries(table)) assert.equal(reasonFor(Number(code)), reason, code);
  assert.equal(reasonFor(null), 'error');
  assert.equal(sipCodeOf(486), 486);
  assert.equal(sipCodeOf(' 603 '), 603);
  for (const bad of [undefined, null, true, 'abc', 4.86, 99, 700, NaN, {}, 'toString']) assert.equal(sipCodeOf(bad), null, String(bad));
  assert.equal(reasonFor(sipCodeOf('constructor')), 'error');
  const metadata = rt.evaluate('outcomeMetadata');
  const at = { destination: 'default', attempt: 1 };
  const failure = { ...at, reason: 'busy', sipCode: 486, playoutOffsetMs: 5, amd: 'human' };
  assert.deepEqual({ ...metadata('a', 'call_transfer', 'ringing', failure) }, outcome('a', 'ringing'), 'reason, sip_code and amd only where they belong');
  assert.deepEqual({ ...metadata('a', 'call_transfer', 'failed', { ...at, reason: 'busy', sipCode: null }) }, outcome('a', 'failed', { reason: 'busy' }));
  assert.deepEqual({ ...metadata('a', 'call_transfer', 'attempt_failed', failure) }, outcome('a', 'attempt_failed', { reason: 'busy', sip_code: 486 }));
  assert.deepEqual({ ...metadata('a', 'call_transfer', 'connected', failure) }, outcome('a', 'connected', { playout_offset_ms: 5 }), 'the offset only with connected / completed');
  const amdOff = { ...metadata('a', 'call_transfer', 'connected', { ...at, playoutOffsetMs: 5, amd: null }) };
  assert.equal('amd' in amdOff, false, 'no amd with AMD off');
  assert.deepEqual({ ...metadata('e', 'end_call', 'completed', { playoutOffsetMs: null }) }, {
    vox_event: 'action_outcome', id: 'e', action: 'end_call', status: 'completed', playout_offset_ms: null,
  });
});
