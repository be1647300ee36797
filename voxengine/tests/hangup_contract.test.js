'use strict';
/** Replays voxengine/contract/hangup_cases.json against the scenario; the checker itself can fail. */

const test = require('node:test');
const assert = require('node:assert/strict');
const { loadHangupCases, lintHangupCase, replayHangupCase, checkHangup, EVENTS } = require('./hangup_replay');

const data = loadHangupCases();

test('hang-up cases: format 1, every case well-formed, every script event and close kind covered', () => {
  assert.equal(data.format, 1);
  assert.ok(data.cases.length > 0);
  const names = new Set();
  for (const kase of data.cases) {
    assert.deepEqual(lintHangupCase(kase), [], kase.name);
    assert.ok(!names.has(kase.name), `duplicate name: ${kase.name}`);
    names.add(kase.name);
  }
  const used = new Set(data.cases.flatMap((kase) => kase.script.map((e) => e.event)));
  assert.deepEqual(EVENTS.filter((e) => !used.has(e)), []);
  const codes = new Set(data.cases.flatMap((kase) => kase.script.filter((e) => e.event === 'agent_closes').map((e) => e.code)));
  assert.ok(codes.has(1000) && [...codes].some((code) => code !== 1000));
});

for (const kase of data.cases) {
  test(`hang-up contract: ${kase.name}`, async () => {
    const observed = await replayHangupCase(kase);
    assert.deepEqual(observed.problems, []);
    assert.deepEqual(checkHangup(kase.expect, observed), []);
  });
}

test('hang-up checker: a late hang-up, a wrong offset, a missing outcome and a missing log line are each caught', () => {
  const expect = { hangup_at_ms: 1500, outcomes: [{ status: 'completed', playout_offset_ms: 1000 }], end_call_offset_ms: 1000 };
  const good = {
    hangup_at_ms: 1500,
    outcomes: [{ vox_event: 'action_outcome', id: 'end-1', action: 'end_call', status: 'completed', playout_offset_ms: 1000 }],
    end_call_offset_ms: 1000,
  };
  assert.deepEqual(checkHangup(expect, good), []);
  assert.equal(checkHangup(expect, { ...good, hangup_at_ms: 1600 }).length, 1);
  assert.equal(checkHangup(expect, { ...good, outcomes: [{ ...good.outcomes[0], playout_offset_ms: null }] }).length, 1);
  assert.ok(checkHangup(expect, { ...good, outcomes: [] }).length >= 1);
  const { end_call_offset_ms: _omitted, ...noLog } = good;
  assert.equal(checkHangup(expect, noLog).length, 1);
  assert.ok(lintHangupCase({ name: 'x', script: [{ at_ms: 0, event: 'nope' }], until_ms: 1, expect: good }).length > 0);
});
