'use strict';
/**
 * The call chain of a hang-up (docs/control-contract.md, "The call chain"): the playout guard,
 * end_call's `completed` outcome with playout_offset_ms, the handling of Cartesia's close codes,
 * the offset on a transfer's `connected`, and the start metadata.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { FakeVoxEngine, AgentsEvents, CartesiaEvents, CONTROL_URL, SCENARIO_STORAGE: STORAGE } = require('./fake_voxengine');

async function startCall(storage = {}) {
  const rt = new FakeVoxEngine({ storage: Object.assign({}, STORAGE, storage) });
  await rt.startCall();
  return rt;
}

function assertClean(rt) {
  assert.deepEqual(rt.errors.map(String), []);
  assert.deepEqual(rt.violations, []);
  assert.ok(rt.count('terminate') <= 1);
}

const endCall = (rt, id) => rt.control({ id, action: 'end_call' });
const completed = (id, offset) => ({ vox_event: 'action_outcome', id, action: 'end_call', status: 'completed', playout_offset_ms: offset });
const callerHungUp = (rt) => rt.count('hangup', { leg: 'caller' }) === 1;
const indexOf = (rt, type, filter = {}) => rt.effects.findIndex((e) => e.type === type && Object.entries(filter).every(([k, v]) => e[k] === v));
const logged = (rt, pattern) => rt.logs.some((line) => pattern.test(line));

/** Hangs up when the session has ended: terminate exactly once afterwards, nothing left running. */
async function assertEndedCleanly(rt) {
  await rt.advance(5000);
  assert.equal(rt.count('terminate'), 1);
  assert.equal(rt.pendingTimers(), 0);
  assertClean(rt);
}

test('setup: the start metadata carries from / to (as Cartesia reads them) and the control URL; media events are followed', async () => {
  const rt = await startCall();
  const start = rt.effects.find((e) => e.type === 'agentStart');
  assert.deepEqual(JSON.parse(JSON.stringify(start.parameters)), { metadata: { vox_session_control_url: CONTROL_URL, from: '+15550001111', to: '+15550002222' } });
  assert.equal(rt.agent.listenerCount(CartesiaEvents.WebSocketMediaStarted), 1);
  assert.equal(rt.agent.listenerCount(CartesiaEvents.WebSocketMediaEnded), 1);
  assert.ok(logged(rt, /^\[cartesia-control\] hang-up: playout guard on \(at most 3 s\)$/));
  assertClean(rt);
});

test('guard on (default): the goodbye still playing holds the hang-up until WebSocketMediaEnded; completed +1000 ms goes first', async () => {
  const rt = await startCall();
  rt.agent.audioStarts();
  assert.deepEqual(endCall(rt, 'end-1'), { ok: true, id: 'end-1', action: 'end_call' }, 'accepted at once');
  await rt.settle();
  assert.equal(rt.count('hangup'), 0, 'held while the audio plays');
  assert.deepEqual(rt.outcomes(), []);
  await rt.advance(500);
  rt.agent.audioStops();
  await rt.advance(999);
  assert.equal(rt.count('hangup'), 0, 'WebSocketMediaEnded comes 1 s after the audio stops');
  await rt.advance(1);
  assert.ok(callerHungUp(rt));
  // Audio stopped 1000 ms before the ended event, and the hang-up is at the event: 1 s of silence.
  assert.deepEqual(rt.outcomes(), [completed('end-1', 1000)]);
  assert.ok(indexOf(rt, 'agentCustom') < indexOf(rt, 'agentClose'), 'told while still connected');
  assert.ok(indexOf(rt, 'agentClose') < indexOf(rt, 'hangup', { leg: 'caller' }));
  assert.ok(logged(rt, /^\[cartesia-control\] end_call end-1 completed playout_offset_ms=1000; agent told$/));
  await assertEndedCleanly(rt);
});

test('guard bound: audio that never ends → hang-up after HANGUP_PLAYOUT_GUARD_MAX_S (default 3 s), offset null', async () => {
  for (const [value, boundMs] of [[undefined, 3000], ['1.5', 1500], ['10', 10000], ['11', 3000], ['0', 3000], ['3s', 3000]]) {
    const rt = await startCall(value === undefined ? {} : { HANGUP_PLAYOUT_GUARD_MAX_S: value });
    rt.agent.audioStarts();
    endCall(rt, 'end-b');
    await rt.advance(boundMs - 1);
    assert.equal(rt.count('hangup'), 0, String(value));
    await rt.advance(1);
    assert.ok(callerHungUp(rt), String(value));
    assert.deepEqual(rt.outcomes(), [completed('end-b', null)], 'audio still playing at the hang-up: unknown cut-off');
    assert.ok(logged(rt, /playout guard bound reached/));
    const complaint = rt.logs.some((line) => line.includes('HANGUP_PLAYOUT_GUARD_MAX_S "'));
    assert.equal(complaint, ['11', '0', '3s'].includes(value), String(value));
    await assertEndedCleanly(rt);
  }
});

test('guard off: the hang-up is at once even while the audio plays (offset null); a bad switch is logged and the guard stays on', async () => {
  for (const value of ['off', ' OFF ']) {
    const rt = await startCall({ HANGUP_PLAYOUT_GUARD: value });
    assert.ok(logged(rt, /playout guard off$/));
    rt.agent.audioStarts();
    endCall(rt, 'end-off');
    await rt.settle();
    assert.ok(callerHungUp(rt), value);
    assert.deepEqual(rt.outcomes(), [completed('end-off', null)]);
    await assertEndedCleanly(rt);
  }
  const rt = await startCall({ HANGUP_PLAYOUT_GUARD: 'maybe' });
  assert.ok(logged(rt, /^\[cartesia-control\] HANGUP_PLAYOUT_GUARD "maybe" is neither on nor off; using on$/));
  rt.agent.audioStarts();
  endCall(rt, 'end-on');
  await rt.settle();
  assert.equal(rt.count('hangup'), 0);
  assertClean(rt);
});

test('audio already over: the hang-up is at once and the offset is the silence since the audio stopped', async () => {
  const rt = await startCall();
  rt.agent.audioStarts();
  await rt.advance(2000);
  rt.agent.audioStops(); // audio ends at t; the ended event at t + 1000
  await rt.advance(1400);
  endCall(rt, 'end-2');
  await rt.settle();
  assert.ok(callerHungUp(rt));
  assert.deepEqual(rt.outcomes(), [completed('end-2', 1400)]);
  await assertEndedCleanly(rt);
});

test('no media event ever: the hang-up is at once, the offset null, never a guess', async () => {
  const rt = await startCall();
  endCall(rt, 'end-3');
  await rt.settle();
  assert.ok(callerHungUp(rt));
  assert.deepEqual(rt.outcomes(), [completed('end-3', null)]);
  assert.ok(logged(rt, /^\[cartesia-control\] end_call end-3 completed playout_offset_ms=null; agent told$/));
  await assertEndedCleanly(rt);
});

test('audio resuming within the 1 s of silence is one stream: the guard keeps waiting for its end', async () => {
  const rt = await startCall();
  rt.agent.audioStarts();
  await rt.advance(300);
  rt.agent.audioStops();
  await rt.advance(600);
  rt.agent.audioStarts(); // before WebSocketMediaEnded: still playing
  endCall(rt, 'end-4');
  await rt.advance(1500);
  assert.equal(rt.count('hangup'), 0);
  rt.agent.audioStops();
  await rt.advance(1000);
  assert.ok(callerHungUp(rt));
  assert.deepEqual(rt.outcomes(), [completed('end-4', 1000)]);
  await assertEndedCleanly(rt);
});

test('while the guard waits: the same id is a duplicate with no second effect, a new id or a transfer is call_ended', async () => {
  const rt = await startCall();
  rt.agent.audioStarts();
  endCall(rt, 'end-5');
  assert.deepEqual(endCall(rt, 'end-5'), { ok: true, id: 'end-5', action: 'end_call', duplicate: true });
  assert.deepEqual(endCall(rt, 'end-6'), { ok: false, error: 'call_ended' });
  assert.deepEqual(rt.control({ id: 'tr-5', action: 'call_transfer', summary: 'x' }), { ok: false, error: 'call_ended' });
  assert.equal(rt.count('callPSTN'), 0);
  rt.agent.audioStops();
  await rt.advance(1000);
  assert.equal(rt.count('hangup', { leg: 'caller' }), 1);
  assert.deepEqual(rt.outcomes(), [completed('end-5', 1000)]);
  await assertEndedCleanly(rt);
});

test('the caller hanging up while the guard waits ends the call: no outcome, no timer left, a late media event changes nothing', async () => {
  const rt = await startCall();
  rt.agent.audioStarts();
  endCall(rt, 'end-7');
  rt.caller.remoteHangup();
  await rt.settle();
  assert.equal(rt.evaluate('session.phase'), 'ended');
  assert.equal(rt.count('hangup', { leg: 'caller' }), 0, 'the caller already left');
  assert.deepEqual(rt.outcomes(), []);
  assert.equal(rt.agent.audioStops(), false, 'the scenario closed the agent: nothing more is delivered');
  await assertEndedCleanly(rt);
});

test('1000 close while the guard waits: the caller is kept and the guard hangs up as planned (the agent, gone, is not told)', async () => {
  const rt = await startCall();
  rt.agent.audioStarts();
  endCall(rt, 'end-8');
  await rt.advance(200);
  rt.agent.remoteClose(1000, 'call ended by agent');
  await rt.settle();
  assert.equal(rt.count('hangup'), 0, 'a normal close does not hang up');
  assert.ok(logged(rt, /the hang-up for end_call end-8 goes on as planned/));
  await rt.advance(300);
  rt.agent.audioStops(); // the buffered goodbye plays out
  await rt.advance(1000);
  assert.ok(callerHungUp(rt));
  assert.deepEqual(rt.outcomes(), [], 'the agent is gone');
  assert.ok(logged(rt, /^\[cartesia-control\] end_call end-8 completed playout_offset_ms=1000; agent not told \(gone\)$/));
  await assertEndedCleanly(rt);
});

test('1000 close with no end_call pending: the caller is kept; an end_call within the grace is performed; a transfer is not', async () => {
  const rt = await startCall();
  rt.agent.remoteClose(1000, 'call ended by agent');
  await rt.settle();
  assert.equal(rt.count('hangup'), 0);
  assert.equal(rt.evaluate('session.phase'), 'closing');
  await rt.advance(2000);
  assert.deepEqual(rt.control({ id: 'tr-9', action: 'call_transfer', summary: 'x' }), { ok: false, error: 'call_ended' });
  assert.deepEqual(endCall(rt, 'end-9'), { ok: true, id: 'end-9', action: 'end_call' });
  await rt.settle();
  assert.ok(callerHungUp(rt), 'no media playing: at once');
  assert.ok(logged(rt, /^\[cartesia-control\] ending call: end_call requested by the agent$/));
  assert.deepEqual(rt.outcomes(), []);
  await assertEndedCleanly(rt);
});

test('1000 close and no end_call: the caller is hung up when AGENT_CLOSE_GRACE_S (3 s) runs out', async () => {
  const rt = await startCall();
  rt.agent.remoteClose(1000, 'call ended by agent');
  await rt.advance(2999);
  assert.equal(rt.count('hangup'), 0);
  await rt.advance(1);
  assert.ok(callerHungUp(rt));
  assert.ok(logged(rt, /^\[cartesia-control\] ending call: agent closed the call; no hang-up request$/));
  assert.deepEqual(endCall(rt, 'end-late'), { ok: false, error: 'call_ended' });
  await assertEndedCleanly(rt);
});

test('abnormal close (1006), WebSocketError: the call ends at once, also while the guard waits', async () => {
  for (const how of ['1006', 'error', '1011 during the guard']) {
    const rt = await startCall();
    if (how.includes('guard')) {
      rt.agent.audioStarts();
      endCall(rt, 'end-10');
      await rt.settle();
      assert.equal(rt.count('hangup'), 0);
    }
    if (how === 'error') rt.agent.fire(AgentsEvents.WebSocketError, { message: 'boom' });
    else rt.agent.remoteClose(Number(how.slice(0, 4)), 'abnormal');
    await rt.settle();
    assert.ok(callerHungUp(rt), how);
    assert.deepEqual(rt.outcomes(), [], how);
    await assertEndedCleanly(rt);
  }
});

test('1000 close during a transfer: the transfer carries on and bridges', async () => {
  const rt = await startCall();
  rt.control({ id: 'tr-11', action: 'call_transfer', summary: '' });
  rt.consult.ring();
  rt.agent.remoteClose(1000, 'call ended by agent');
  await rt.advance(4000);
  assert.equal(rt.count('hangup'), 0);
  assert.ok(logged(rt, /the transfer carries on without the agent/));
  rt.consult.remoteAnswer();
  await rt.settle();
  assert.equal(rt.hearing('caller'), 'consult');
  assertClean(rt);
});

test('transfer: connected carries the playout offset at the bridge: positive after the audio ended, null while it plays', async () => {
  for (const [playing, offset] of [[false, 2500], [true, null]]) {
    const rt = await startCall();
    rt.agent.audioStarts();
    rt.control({ id: 'tr-12', action: 'call_transfer', summary: '' });
    await rt.advance(500);
    rt.agent.audioStops();
    await rt.advance(1500); // ended event at +1000, audio over since 1500 ms
    if (playing) rt.agent.audioStarts();
    await rt.advance(1000);
    rt.consult.remoteAnswer();
    await rt.settle();
    const connected = rt.outcomes().find((o) => o.status === 'connected');
    assert.equal(connected.playout_offset_ms, offset, String(playing));
    assert.ok(logged(rt, new RegExp(`transfer tr-12 connected destination=default attempt=1 amd=human playout_offset_ms=${offset}; agent told`)));
    assertClean(rt);
  }
});
