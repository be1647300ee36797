'use strict';
/**
 * Replays every case of voxengine/contract/outcome_cases.json against scenario.js, and checks that
 * the case files (with destination_cases.json) cover every failure reason of
 * docs/control-contract.md ("Outcome events") and every script event of the format.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { loadOutcomeCases, lintOutcomeCase, replayOutcomeCase, checkOutcome, EVENTS, untilOf, MIN_GAP_MS } = require('./outcome_replay');
const { loadDestinationCases } = require('./destination_replay');

const file = loadOutcomeCases();
const CONTRACT_DOC = path.join(__dirname, '..', '..', 'docs', 'control-contract.md');

test('outcome cases: the file is well-formed, names are unique', () => {
  assert.equal(file.format, 1);
  assert.equal(typeof file.description, 'string');
  assert.ok(Array.isArray(file.cases) && file.cases.length > 0);
  const names = new Set();
  for (const kase of file.cases) {
    assert.deepEqual(lintOutcomeCase(kase), [], kase.name);
    assert.ok(!names.has(kase.name), `duplicate case name: ${kase.name}`);
    names.add(kase.name);
  }
});

test('outcome cases: every documented failure reason, status, script event and end state is covered', () => {
  const doc = fs.readFileSync(CONTRACT_DOC, 'utf8');
  const table = doc.slice(doc.indexOf('| reason | when |')).split(/\n\s*\n/)[0];
  const reasons = [...table.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
  assert.ok(reasons.length >= 7, `found only ${reasons.length} reasons in the contract's reason table`);
  const outcomes = file.cases.flatMap((kase) => kase.expect.outcomes);
  // The reasons of issue #18 (voicemail) are pinned by the destination cases.
  const everywhere = outcomes.concat(loadDestinationCases().cases.flatMap((kase) => kase.expect.outcomes));
  for (const reason of reasons) assert.ok(everywhere.some((o) => o.reason === reason), `no case expects failed ${reason}`);
  for (const status of ['ringing', 'connected', 'failed']) assert.ok(outcomes.some((o) => o.status === status), status);
  const events = new Set(file.cases.flatMap((kase) => kase.script.map((e) => e.event)));
  for (const event of EVENTS) assert.ok(events.has(event), `no case uses ${event}`);
  for (const end of ['agent', 'target', 'nobody']) assert.ok(file.cases.some((kase) => kase.expect.caller_with === end), end);
  for (const [code, reason] of [[486, 'busy'], [600, 'busy'], [480, 'no_answer'], [603, 'rejected'], [404, 'error']]) {
    assert.ok(outcomes.some((o) => o.reason === reason && o.sip_code === code), `no case maps ${code} to ${reason}`);
  }
  assert.ok(file.cases.some((kase) => kase.settings && kase.settings.whisper === false), 'whisper off');
  assert.ok(file.cases.some((kase) => kase.summary === ''), 'empty summary');
});

for (const kase of file.cases) {
  test(`outcome contract: ${kase.name}`, async () => {
    const observed = await replayOutcomeCase(kase);
    assert.deepEqual(observed.problems, [], 'replay');
    assert.deepEqual(checkOutcome(kase.expect, observed), [], 'expect');
  });
}

// The checker and the linter must be able to fail, or the replay above proves nothing.
test('checkOutcome reports every kind of mismatch', () => {
  const out = (status, extra) => Object.assign({ vox_event: 'action_outcome', id: 'transfer-1', action: 'call_transfer', status }, extra);
  const expect = { outcomes: [{ status: 'ringing' }, { status: 'failed', reason: 'busy', sip_code: 486 }], whisper: null, caller_with: 'agent', session_ended: false };
  const good = { outcomes: [out('ringing'), out('failed', { reason: 'busy', sip_code: 486 })], whisper: null, caller_with: 'agent', session_ended: false };
  assert.deepEqual(checkOutcome(expect, good), []);
  assert.deepEqual(checkOutcome({ ...expect, outcomes: [{ status: 'ringing' }, { status: 'failed' }] }, good), [], 'keys not given are not compared');
  assert.equal(checkOutcome(expect, { ...good, outcomes: good.outcomes.slice(0, 1) }).length, 1, 'too few');
  assert.equal(checkOutcome(expect, { ...good, outcomes: good.outcomes.concat(out('connected')) }).length, 1, 'too many');
  assert.equal(checkOutcome(expect, { ...good, outcomes: [good.outcomes[1], good.outcomes[0]] }).length, 4, 'order');
  assert.equal(checkOutcome(expect, { ...good, outcomes: [out('ringing'), out('failed', { reason: 'busy', sip_code: 600 })] }).length, 1);
  assert.equal(checkOutcome(expect, { ...good, outcomes: [out('ringing', { id: 'other' }), good.outcomes[1]] }).length, 1, 'wrong id');
  assert.equal(checkOutcome(expect, { ...good, outcomes: [{ status: 'ringing' }, good.outcomes[1]] }).length, 1, 'not an outcome');
  assert.equal(checkOutcome(expect, { ...good, whisper: 'x' }).length, 1);
  assert.equal(checkOutcome(expect, { ...good, caller_with: 'target' }).length, 1);
  assert.equal(checkOutcome(expect, { ...good, session_ended: true }).length, 1);
});

test('lintOutcomeCase rejects malformed cases and racy timings', () => {
  const base = { name: 'n', summary: 's', script: [{ at_ms: 100, event: 'ringing' }], expect: { outcomes: [], whisper: null, caller_with: 'agent', session_ended: false } };
  assert.deepEqual(lintOutcomeCase(base), []);
  assert.equal(untilOf(base), 100 + 600);
  const bad = [
    { ...base, name: '' },
    { ...base, summary: null },
    { ...base, settings: { ring_timeout: 1 } },
    { ...base, settings: { whisper: 'off' } },
    { ...base, settings: { ring_timeout_s: 0 } },
    { ...base, script: [{ at_ms: 100, event: 'rings' }] },
    { ...base, script: [{ at_ms: 2000, event: 'ringing' }] },
    { ...base, script: [{ at_ms: 200, event: 'ringing' }, { at_ms: 100, event: 'ringing' }] },
    { ...base, script: [{ at_ms: 100, event: 'failed' }] },
    { ...base, script: [{ at_ms: 100, event: 'ringing' }, { at_ms: 100, event: 'dial_error' }] },
    { ...base, settings: { ring_timeout_s: 0.15 } }, // due 150 ms: too close to the ringing at 100
    { ...base, settings: { ring_timeout_s: 0.65 } }, // due 650 ms: too close to the end at 700
    { ...base, script: [{ at_ms: 100, event: 'answered' }], settings: { whisper_timeout_s: 0.55 } },
    { ...base, expect: { ...base.expect, caller_with: 'both' } },
    { ...base, expect: { ...base.expect, session_ended: 'no' } },
    { ...base, expect: { ...base.expect, outcomes: [{ reason: 'busy' }] } },
    { ...base, until_ms: 50 },
  ];
  bad.forEach((kase, i) => assert.notDeepEqual(lintOutcomeCase(kase), [], `bad case ${i}`));
  assert.equal(MIN_GAP_MS, 100);
});

test('replayOutcomeCase reports events that cannot happen and scenario mistakes', async () => {
  const base = { name: 'n', summary: 's', expect: { outcomes: [], whisper: null, caller_with: 'agent', session_ended: false } };
  const impossible = await replayOutcomeCase({ ...base, script: [{ at_ms: 100, event: 'failed', code: 486 }, { at_ms: 300, event: 'answered' }] });
  assert.ok(impossible.problems.some((p) => p.startsWith('answered at 300 ms')), impossible.problems.join('\n'));
  const noWhisper = await replayOutcomeCase({ ...base, script: [{ at_ms: 100, event: 'whisper_done' }] });
  assert.ok(noWhisper.problems.some((p) => p.startsWith('whisper_done at 100 ms')), noWhisper.problems.join('\n'));
});
