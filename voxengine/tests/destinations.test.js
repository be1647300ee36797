'use strict';
/**
 * Issue #18 in the scenario, event by event: the destination table and its log, the fallback
 * chain's attempts, answering-machine detection on the transfer leg (what is created, when the
 * whisper may start, what a machine never gets), the extension, the keypad both ways (digits never
 * logged) and the MAX_CALL_S backstop. The shared stories are in destination_cases.json.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { FakeVoxEngine, SCENARIO_STORAGE } = require('./fake_voxengine');

const SALES = '+15550001001';
const SUPPORT = '+15550001002';
const SUMMARY = 'Caller wants help with a bill.';

async function startCall(storage = {}, options = {}) {
  const rt = new FakeVoxEngine(Object.assign({}, options, { storage: Object.assign({}, SCENARIO_STORAGE, storage) }));
  await rt.startCall();
  return rt;
}

function assertClean(rt) {
  assert.deepEqual(rt.errors.map(String), []);
  assert.deepEqual(rt.violations, []);
}

const transfer = (rt, destination, id = 'tr-1') => rt.control(Object.assign({ id, action: 'call_transfer', summary: SUMMARY }, destination === undefined ? {} : { destination }));
const statuses = (rt) => rt.outcomes().map((o) => `${o.status}:${o.destination}:${o.attempt}${o.reason ? ':' + o.reason : ''}`);
const said = (rt) => rt.effects.filter((e) => e.type === 'say').map((e) => e.leg);
const phase = (rt) => rt.evaluate('session.phase');
const chain = JSON.stringify({ sales: { to: SALES, fallback: ['support'] }, support: SUPPORT });

test('destinations: the table in force and every problem are logged in one line each, without throwing', async () => {
  const rt = await startCall({
    TRANSFER_DESTINATIONS: JSON.stringify({
      sales: { to: SALES, fallback: ['support', 'nowhere'], ring_timeout: 5, caller_id: '555' },
      support: SUPPORT,
      'Bad Name': SALES,
      broken: { to: 'tel:123' },
      list: [SALES],
    }),
  });
  const problems = rt.logs.filter((line) => line.startsWith('[cartesia-control] TRANSFER_DESTINATIONS: '));
  assert.equal(problems.length, 1, rt.logs.join('\n'));
  for (const part of ['"Bad Name" left out', '"broken" left out', '"list" left out', 'ring_timeout is not a destination field', 'caller_id is not an E.164 number', 'fallback "nowhere" is not a destination']) {
    assert.ok(problems[0].includes(part), part);
  }
  assert.ok(rt.logs.includes('[cartesia-control] transfer destinations: sales (then support), support, default'), rt.logs.join('\n'));
  assert.equal(transfer(rt, 'broken').error, 'unknown_destination');
  assert.equal(transfer(rt, 'sales', 'tr-2').ok, true);
  assert.deepEqual(rt.effects.filter((e) => e.type === 'callPSTN').map((e) => [e.number, e.callerid]), [[SALES, '+15550004444']], 'a bad caller_id falls back to PSTN_CALLER_ID');
  assertClean(rt);
});

test('destinations: TRANSFER_DESTINATIONS alone configures the call; neither it nor TRANSFER_NUMBER → not configured', async () => {
  const only = await startCall({ TRANSFER_NUMBER: undefined, TRANSFER_DESTINATIONS: chain });
  assert.equal(only.evaluate('session.phase'), 'active');
  const none = await startCall({ TRANSFER_NUMBER: undefined });
  assert.ok(none.logs.includes('[cartesia-control] missing ApplicationStorage keys: TRANSFER_NUMBER (or TRANSFER_DESTINATIONS)'), none.logs.join('\n'));
  assert.equal(none.count('createAgentsClient'), 0);
  assertClean(only);
  assertClean(none);
});

test('fallback: the next destination is dialled at once, each with its own ring timeout; late events of the first leg change nothing', async () => {
  const rt = await startCall({ TRANSFER_DESTINATIONS: JSON.stringify({ sales: { to: SALES, ring_timeout_s: 2, fallback: ['support'] }, support: { to: SUPPORT, ring_timeout_s: 3 } }) });
  transfer(rt, 'sales');
  rt.consult.ring();
  await rt.advance(2000);
  assert.deepEqual(rt.hangupTimes('consult'), [rt.nowMs], 'the first leg is hung up at its own ring timeout');
  assert.equal(rt.consults.length, 2, 'and the fallback dialled at that moment');
  const first = rt.consults[0];
  const second = rt.consults[1];
  assert.equal(first.remoteFail(480), false, 'the first leg has ended');
  first.emit('Call.Failed', { code: 486 }); // a late event of the first attempt
  await rt.settle();
  assert.deepEqual(statuses(rt), ['ringing:sales:1', 'attempt_failed:sales:1:no_answer']);
  await rt.advance(2999);
  assert.equal(second.ended, false);
  await rt.advance(1);
  assert.equal(second.ended, true, 'the second leg has its own 3 s');
  assert.deepEqual(statuses(rt), ['ringing:sales:1', 'attempt_failed:sales:1:no_answer', 'failed:support:2:no_answer']);
  assert.equal(phase(rt), 'active');
  assert.equal(transfer(rt, 'sales', 'tr-2').ok, true, 'a new transfer may follow');
  assert.equal(rt.pendingTimers(), 1, 'only the new transfer\'s ring timer');
  assertClean(rt);
});

test('fallback: a second call_transfer during the chain is transfer_in_progress', async () => {
  const rt = await startCall({ TRANSFER_DESTINATIONS: chain });
  transfer(rt, 'sales');
  rt.consult.remoteFail(486);
  await rt.settle();
  assert.equal(rt.consults.length, 2);
  assert.equal(transfer(rt, 'support', 'tr-2').error, 'transfer_in_progress');
  assertClean(rt);
});

test('AMD: one detector per attempt, with the model and TRANSFER_AMD_TIMEOUT_S in ms, given to the dial as amd', async () => {
  const rt = await startCall({ TRANSFER_DESTINATIONS: chain, TRANSFER_AMD_TIMEOUT_S: '2.5', TRANSFER_AMD_MODEL: 'eu_general' });
  transfer(rt, 'sales');
  rt.consult.remoteFail(486);
  await rt.settle();
  const created = JSON.parse(JSON.stringify(rt.effects.filter((e) => e.type === 'amdCreate').map((e) => e.parameters)));
  assert.deepEqual(created, [{ model: 'eu_general', timeout: 2500 }, { model: 'eu_general', timeout: 2500 }]);
  assert.ok(rt.consults.every((leg) => leg.amd && leg.amd.call === leg), 'each leg has its own detector');
  assert.ok(rt.logs.includes('[cartesia-control] transfer: ring timeout 30 s, whisper on (timeout 15 s, voice default), answering-machine detection on (timeout 2.5 s)'), rt.logs.join('\n'));
  assertClean(rt);
});

test('AMD: the whisper waits for the verdict; a machine is hung up and never hears anything', async () => {
  const rt = await startCall({ TRANSFER_DESTINATIONS: chain });
  transfer(rt, 'sales');
  rt.consult.remoteAnswer({ amd: null });
  await rt.advance(1000);
  assert.deepEqual(said(rt), [], 'nothing said while detecting');
  assert.equal(phase(rt), 'transferring');
  rt.consult.detection('VOICEMAIL');
  await rt.settle();
  assert.equal(rt.consults[0].ended, true);
  assert.deepEqual(rt.audio.filter((a) => a.leg === 'consult').map((a) => a.source), [], 'the machine heard nothing');
  assert.deepEqual(statuses(rt), ['attempt_failed:sales:1:voicemail']);
  const second = rt.consults[1];
  second.remoteAnswer({ amd: null });
  await rt.settle();
  second.detection('HUMAN');
  await rt.settle();
  assert.deepEqual(said(rt), ['consult2'], 'the person is whispered to once detected');
  assertClean(rt);
});

test('AMD: no verdict → a human at TRANSFER_AMD_TIMEOUT_S exactly; a later verdict changes nothing', async () => {
  const rt = await startCall({ TRANSFER_AMD_TIMEOUT_S: '4' });
  transfer(rt);
  rt.consult.remoteAnswer({ amd: null });
  await rt.advance(3999);
  assert.deepEqual(said(rt), []);
  await rt.advance(1);
  assert.deepEqual(said(rt), ['consult']);
  assert.ok(rt.logs.includes('[cartesia-control] transfer tr-1: no AMD verdict within 4 s; counted as a human'));
  rt.consult.detection('VOICEMAIL');
  rt.consult.playbackFinished();
  await rt.settle();
  assert.deepEqual(statuses(rt), ['connected:default:1']);
  assert.equal(rt.outcomes()[0].amd, 'timeout');
  assert.equal(rt.hearing('caller'), 'consult');
  assertClean(rt);
});

test('AMD: the platform\'s TIMEOUT and a DetectionError count as a human (amd timeout); CALL_ENDED waits for the leg', async () => {
  for (const verdict of ['TIMEOUT', 'error']) {
    const rt = await startCall({ TRANSFER_WHISPER: 'off' });
    transfer(rt);
    rt.consult.remoteAnswer({ amd: null });
    if (verdict === 'error') rt.consult.detectionError('model unavailable');
    else rt.consult.detection(verdict);
    await rt.settle();
    assert.deepEqual(rt.outcomes().map((o) => [o.status, o.amd]), [['connected', 'timeout']], verdict);
    assert.equal(rt.pendingTimers(), 0, 'no AMD timer left');
    assertClean(rt);
  }
  const rt = await startCall();
  transfer(rt);
  rt.consult.remoteAnswer({ amd: null });
  rt.consult.detection('CALL_ENDED');
  await rt.settle();
  assert.deepEqual(rt.outcomes(), []);
  rt.consult.remoteHangup();
  await rt.settle();
  assert.deepEqual(statuses(rt), ['failed:default:1:target_hung_up'], 'hanging up after answering is final, no fallback');
  assertClean(rt);
});

test('AMD: without the AMD namespace the call goes on, logged once, and transfers bridge without detection', async () => {
  const rt = await startCall({}, { noAmd: true });
  assert.ok(rt.logs.includes('[cartesia-control] answering-machine detection is not available (no AMD module); transfers bridge without it'));
  transfer(rt);
  assert.equal(rt.effects.filter((e) => e.type === 'callPSTN')[0].parameters, undefined, 'no amd parameter');
  rt.consult.remoteAnswer();
  rt.consult.playbackFinished();
  await rt.settle();
  assert.equal('amd' in rt.outcomes()[0], false);
  assertClean(rt);
});

test('AMD: an unknown TRANSFER_AMD_MODEL is logged and US used; AMD.create throwing bridges that attempt without detection', async () => {
  const rt = await startCall({ TRANSFER_AMD_MODEL: 'mars' });
  assert.ok(rt.logs.includes('[cartesia-control] TRANSFER_AMD_MODEL "mars" is not an AMD.Model; using US'));
  transfer(rt);
  assert.equal(rt.effects.find((e) => e.type === 'amdCreate').parameters.model, 'us');
  assertClean(rt);
  const broken = await startCall();
  broken.context.AMD.create = () => {
    throw new Error('no detector');
  };
  transfer(broken);
  assert.ok(broken.logs.some((line) => line.includes('create the answering-machine detector failed: no detector')));
  broken.consult.remoteAnswer({ amd: null });
  await broken.settle();
  assert.deepEqual(said(broken), ['consult'], 'whispered at once');
  assertClean(broken);
});

test('extension: keyed after the human, w sent as p; the whisper starts 300 ms per symbol later; digits never logged', async () => {
  const rt = await startCall({ TRANSFER_DESTINATIONS: JSON.stringify({ desk: { to: SALES, extension: '4w72' } }) });
  transfer(rt, 'desk');
  rt.consult.remoteAnswer({ amd: null });
  await rt.settle();
  assert.equal(rt.count('sendDigits'), 0, 'nothing keyed before the verdict');
  rt.consult.detection('HUMAN');
  const at = rt.nowMs;
  await rt.settle();
  assert.deepEqual(rt.effects.filter((e) => e.type === 'sendDigits').map((e) => [e.leg, e.digits, e.at]), [['consult', '4p72', at]]);
  await rt.advance(1199);
  assert.deepEqual(said(rt), []);
  await rt.advance(1);
  assert.deepEqual(said(rt), ['consult']);
  assert.ok(rt.logs.includes('[cartesia-control] transfer tr-1: extension sent to desk (4 symbols)'));
  assert.ok(!rt.logs.some((line) => /4w72|4p72/.test(line)), 'the extension is not in the log');
  assertClean(rt);
});

test('keypad: caller keys reach the agent only while it is connected; digits are counted, never logged', async () => {
  const rt = await startCall();
  assert.equal(rt.count('handleTones', { leg: 'caller', doHandle: true }), 1);
  for (const tone of ['4', '1', '7', '*']) rt.caller.tone(tone);
  rt.caller.tone('A'); // not a DTMF digit VoxEngine reports; ignored
  assert.deepEqual(rt.dtmfSent.map((sent) => sent.parameters), [{ dtmf: '4' }, { dtmf: '1' }, { dtmf: '7' }, { dtmf: '*' }]);
  rt.agent.remoteClose(1006, 'gone');
  await rt.settle();
  assert.equal(rt.caller.tone('9'), false, 'the call has ended');
  assert.equal(rt.dtmfSent.length, 4);
  assert.ok(rt.logs.includes('[cartesia-control] keypad: 4 caller keys to the agent, 0 agent digits played, 0 caller keys to the transfer target'), rt.logs.join('\n'));
  assert.ok(!rt.logs.some((line) => line.includes('417')), 'no digits in the log');
  assertClean(rt);
});

test('keypad: a caller key during the transfer\'s ringing still reaches the agent; dtmf() throwing is logged and the call goes on', async () => {
  const rt = await startCall();
  transfer(rt);
  rt.caller.tone('3');
  rt.throwNext('dtmf', 'socket busy');
  rt.caller.tone('5');
  assert.deepEqual(rt.dtmfSent.map((sent) => sent.parameters.dtmf), ['3']);
  assert.ok(rt.logs.includes('[cartesia-control] send a key to the agent failed: socket busy'));
  assert.equal(phase(rt), 'transferring');
  rt.agent.remoteClose(1006, 'gone'); // the transfer carries on without the agent
  await rt.settle();
  assert.equal(rt.caller.tone('8'), true, 'the caller is still there');
  assert.deepEqual(rt.dtmfSent.map((sent) => sent.parameters.dtmf), ['3'], 'no key to an agent that is gone');
  assertClean(rt);
});

test('keypad: agent digits go to the caller, to the answered target before the bridge, and nowhere after the hand-off', async () => {
  const rt = await startCall({ TRANSFER_AMD_TIMEOUT_S: '5' });
  rt.agent.agentDtmf('0123456789*#');
  transfer(rt);
  rt.agent.agentDtmf('1'); // still ringing: the agent talks to the caller
  rt.consult.remoteAnswer({ amd: null });
  rt.agent.agentDtmf('22');
  rt.consult.detection('HUMAN');
  rt.agent.agentDtmf('3'); // whispering: the target
  rt.consult.playbackFinished();
  await rt.settle();
  assert.equal(rt.agent.agentDtmf('4'), false, 'the agent is off the call');
  assert.deepEqual(rt.effects.filter((e) => e.type === 'sendDigits').map((e) => [e.leg, e.digits]),
    [['caller', '0123456789*#'], ['caller', '1'], ['consult', '22'], ['consult', '3']]);
  assert.ok(rt.logs.includes('[cartesia-control] agent DTMF: 12 digit(s) played to the caller'));
  assert.ok(rt.logs.includes('[cartesia-control] agent DTMF: 2 digit(s) played to the transfer target'));
  assert.ok(!rt.logs.some((line) => line.includes('0123456789')));
  assertClean(rt);
});

test('keypad: malformed agent DTMF is ignored with a log line; sendDigits throwing never escapes the handler', async () => {
  const rt = await startCall();
  for (const bad of ['', '12a', '1'.repeat(33)]) rt.agent.agentDtmf(bad);
  rt.agent.fire('Cartesia.Agents.DTMF', null);
  assert.equal(rt.count('sendDigits'), 0);
  assert.equal(rt.logs.filter((line) => line === '[cartesia-control] agent DTMF ignored: not 1-32 of 0-9 * #').length, 4);
  rt.throwNext('sendDigits', 'leg busy');
  rt.agent.agentDtmf('9');
  assert.ok(rt.logs.includes('[cartesia-control] play the agent\'s digits failed: leg busy'));
  assertClean(rt);
});

test('MAX_CALL_S: the caller is hung up at the limit, counted from the answer, whatever the agent does', async () => {
  const rt = await startCall({ MAX_CALL_S: '90' });
  assert.ok(rt.logs.includes('[cartesia-control] call length: at most 90 s (MAX_CALL_S)'));
  rt.agent.audioStarts(); // the agent talking does not hold the backstop
  await rt.advance(89999);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 0);
  await rt.advance(1);
  assert.deepEqual(rt.hangupTimes('caller'), [rt.nowMs]);
  assert.ok(rt.logs.includes('[cartesia-control] ending call: maximum call length reached (MAX_CALL_S 90 s)'));
  await rt.advance(1000);
  assert.equal(rt.count('terminate'), 1);
  assertClean(rt);
});

test('MAX_CALL_S: unset or unparsable means no limit (the latter logged); the hand-off stops it', async () => {
  const bad = await startCall({ MAX_CALL_S: '90s' });
  assert.ok(bad.logs.includes('[cartesia-control] MAX_CALL_S "90s" is not a number of seconds in (0, 86400]; no call-length limit'));
  assert.equal(bad.pendingTimers(), 0);
  const rt = await startCall({ MAX_CALL_S: '10', TRANSFER_WHISPER: 'off' });
  transfer(rt);
  rt.consult.remoteAnswer();
  await rt.settle();
  assert.equal(phase(rt), 'transferred');
  await rt.advance(60000);
  assert.equal(rt.count('hangup'), 0, 'the caller and the target talk on');
  assertClean(bad);
  assertClean(rt);
});
