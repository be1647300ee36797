'use strict';
/**
 * Replays every case of voxengine/contract/destination_cases.json against scenario.js, and checks
 * that the file covers every behaviour, script event and new outcome of the format.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { BEHAVIOURS } = require('./fake_voxengine');
const {
  loadDestinationCases, lintDestinationCase, replayDestinationCase, checkDestinationCase, EVENTS, SETTING_KEYS,
} = require('./destination_replay');

const file = loadDestinationCases();

test('destination cases: the file is well-formed, names are unique', () => {
  assert.equal(file.format, 1);
  assert.equal(typeof file.description, 'string');
  const names = new Set();
  for (const kase of file.cases) {
    assert.deepEqual(lintDestinationCase(kase), [], kase.name);
    assert.ok(!names.has(kase.name), `duplicate case name: ${kase.name}`);
    names.add(kase.name);
  }
});

test('destination cases: every behaviour, script event, setting and issue #18 outcome is covered', () => {
  const behaviours = new Set(file.cases.flatMap((kase) => Object.values(kase.behaviours || {})));
  for (const behaviour of Object.keys(BEHAVIOURS)) assert.ok(behaviours.has(behaviour), `no case uses ${behaviour}`);
  const events = new Set(file.cases.flatMap((kase) => kase.script.map((e) => e.event)));
  for (const event of EVENTS) assert.ok(events.has(event), `no case uses ${event}`);
  const settings = new Set(file.cases.flatMap((kase) => Object.keys(kase.settings || {})));
  for (const key of ['amd', 'amd_timeout_s', 'max_call_s']) assert.ok(settings.has(key), `no case sets ${key}`);
  assert.ok(Object.keys(SETTING_KEYS).length >= 6);
  const outcomes = file.cases.flatMap((kase) => kase.expect.outcomes);
  for (const reason of ['busy', 'no_answer', 'voicemail', 'rejected', 'error']) {
    assert.ok(outcomes.some((o) => o.status === 'attempt_failed' && o.reason === reason) || outcomes.some((o) => o.status === 'failed' && o.reason === reason), reason);
  }
  for (const amd of ['human', 'timeout']) assert.ok(outcomes.some((o) => o.status === 'connected' && o.amd === amd), amd);
  assert.ok(outcomes.some((o) => o.status === 'connected' && (o.absent || []).includes('amd')), 'AMD off');
  assert.ok(file.cases.some((kase) => kase.expect.response && kase.expect.response.error === 'unknown_destination'));
  assert.ok(file.cases.some((kase) => (kase.expect.digits || []).some((d) => d.leg === 'target')));
  assert.ok(file.cases.some((kase) => (kase.expect.digits || []).some((d) => d.leg === 'caller')));
  assert.ok(file.cases.some((kase) => (kase.expect.keys_to_agent || []).length > 0));
});

for (const kase of file.cases) {
  test(`destination contract: ${kase.name}`, async () => {
    const observed = await replayDestinationCase(kase);
    assert.deepEqual(observed.problems, [], 'replay');
    assert.deepEqual(checkDestinationCase(kase.expect, observed), [], 'expect');
  });
}

// The checker and the linter must be able to fail, or the replay above proves nothing.
test('checkDestinationCase reports every kind of mismatch', () => {
  const out = (status, extra) => Object.assign({ vox_event: 'action_outcome', id: 'transfer-1', action: 'call_transfer', status }, extra);
  const expect = {
    dialled: [{ to: '+1', caller_id: '+2' }],
    outcomes: [{ status: 'ringing', destination: 'a' }, { status: 'connected', absent: ['amd'] }],
    whisper: null, digits: [{ leg: 'caller', digits: '1' }], keys_to_agent: ['5'], caller_with: 'target', session_ended: false,
  };
  const good = {
    response: { ok: true, id: 'transfer-1' }, dialled: [{ to: '+1', caller_id: '+2' }],
    outcomes: [out('ringing', { destination: 'a', attempt: 1 }), out('connected', { destination: 'a', attempt: 1 })],
    whisper: null, digits: [{ leg: 'caller', digits: '1' }], keys_to_agent: ['5'], caller_with: 'target', session_ended: false,
  };
  assert.deepEqual(checkDestinationCase(expect, good), []);
  const one = (changed) => checkDestinationCase(expect, { ...good, ...changed }).length;
  assert.equal(one({ response: { ok: false, error: 'unknown_destination' } }), 1);
  assert.equal(one({ dialled: [] }), 1);
  assert.equal(one({ dialled: [{ to: '+1', caller_id: '+3' }] }), 1);
  assert.equal(one({ outcomes: good.outcomes.slice(0, 1) }), 1);
  assert.equal(one({ outcomes: [good.outcomes[0], out('connected', { amd: 'human' })] }), 1, 'absent key present');
  assert.equal(one({ outcomes: [out('ringing', { destination: 'b' }), good.outcomes[1]] }), 1);
  assert.equal(one({ outcomes: [{ status: 'ringing', destination: 'a' }, good.outcomes[1]] }), 1, 'not an outcome');
  assert.equal(one({ whisper: 'x' }), 1);
  assert.equal(one({ digits: [] }), 1);
  assert.equal(one({ keys_to_agent: ['5', '5'] }), 1);
  assert.equal(one({ caller_with: 'agent' }), 1);
  assert.equal(one({ session_ended: true }), 1);
  assert.deepEqual(checkDestinationCase({ ...expect, digits: undefined, keys_to_agent: undefined }, { ...good, digits: [], keys_to_agent: [] }), [], 'not compared when not given');
});

test('lintDestinationCase rejects malformed cases', () => {
  const base = {
    name: 'n', summary: 's', transfer_number: '+15550003333', request: {}, script: [],
    expect: { dialled: [], outcomes: [], whisper: null, caller_with: 'agent', session_ended: false },
  };
  assert.deepEqual(lintDestinationCase(base), []);
  const bad = [
    { ...base, name: '' },
    { ...base, summary: 3 },
    { ...base, transfer_number: undefined },
    { ...base, destinations: [] },
    { ...base, settings: { amd: 'off' } },
    { ...base, settings: { amd_timeout: 1 } },
    { ...base, behaviours: { default: 'sleepy' } },
    { ...base, behaviours: { sales: 'busy' } },
    { ...base, request: 'x' },
    { ...base, script: [{ at_ms: 100, event: 'caller_tone' }] },
    { ...base, script: [{ at_ms: 100, event: 'agent_dtmf' }] },
    { ...base, script: [{ at_ms: 200, event: 'end_call' }, { at_ms: 100, event: 'end_call' }] },
    { ...base, script: [{ at_ms: 100, event: 'rings' }] },
    { ...base, until_ms: 0, script: [{ at_ms: 100, event: 'end_call' }] },
    { ...base, expect: { ...base.expect, dialled: ['+1'] } },
    { ...base, expect: { ...base.expect, caller_with: 'both' } },
    { ...base, expect: { ...base.expect, digits: '1' } },
  ];
  bad.forEach((kase, i) => assert.notDeepEqual(lintDestinationCase(kase), [], `bad case ${i}`));
});
