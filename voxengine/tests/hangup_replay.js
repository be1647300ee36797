'use strict';
/**
 * Replays voxengine/contract/hangup_cases.json (format: voxengine/contract/README.md, "Hang-up
 * cases") against scenario.js in the fake VoxEngine runtime: lint, replay and check are separate,
 * as in outcome_replay.js.
 */

const fs = require('node:fs');
const path = require('node:path');
const { FakeVoxEngine, SCENARIO_STORAGE } = require('./fake_voxengine');
const { isPlainObject, lintScript } = require('./outcome_replay');

const HANGUP_CASES_PATH = path.join(__dirname, '..', 'contract', 'hangup_cases.json');
const END_CALL_ID = 'end-1';
const EVENTS = ['audio_starts', 'audio_stops', 'end_call', 'agent_closes', 'caller_hangs_up'];
const SETTINGS = { playout_guard: true, playout_guard_max_s: 3 };
/** The end_call's log line: `end_call end-1 completed playout_offset_ms=<n|null>; ...`. */
const OFFSET_LOG = new RegExp(`^\\[cartesia-control\\] end_call ${END_CALL_ID} completed playout_offset_ms=(-?\\d+|null);`);

const isOffset = (v) => v === null || Number.isInteger(v);

function loadHangupCases() {
  return JSON.parse(fs.readFileSync(HANGUP_CASES_PATH, 'utf8'));
}

/** Problems with the shape of a case (empty when well-formed). */
function lintHangupCase(kase) {
  if (!isPlainObject(kase)) return ['a case must be an object'];
  const problems = [];
  if (typeof kase.name !== 'string' || !kase.name) problems.push('name must be a non-empty string');
  for (const [key, value] of Object.entries(kase.settings || {})) {
    if (!(key in SETTINGS)) problems.push(`unknown setting ${key}`);
    else if (key === 'playout_guard' ? typeof value !== 'boolean' : !(typeof value === 'number' && value > 0 && value <= 10)) problems.push(`bad setting ${key}`);
  }
  if (!Array.isArray(kase.script)) return problems.concat('script must be an array');
  const script = lintScript(kase.script, EVENTS, { agent_closes: { ok: (e) => Number.isInteger(e.code), what: 'an integer code' } });
  problems.push(...script.problems);
  const previous = script.last;
  if (kase.script.filter((e) => e.event === 'end_call').length > 1) problems.push('at most one end_call');
  if (!(Number.isInteger(kase.until_ms) && kase.until_ms > previous)) problems.push('until_ms must be an integer after the last event');
  const expect = kase.expect;
  if (!isPlainObject(expect)) return problems.concat('expect must be an object');
  if (!(expect.hangup_at_ms === null || Number.isInteger(expect.hangup_at_ms))) problems.push('expect.hangup_at_ms must be an integer or null');
  if (!Array.isArray(expect.outcomes) || !expect.outcomes.every(isPlainObject)) problems.push('expect.outcomes must be a list of objects');
  if ('end_call_offset_ms' in expect && !isOffset(expect.end_call_offset_ms)) problems.push('expect.end_call_offset_ms must be an integer or null');
  return problems;
}

function storageFor(kase) {
  const settings = Object.assign({}, SETTINGS, kase.settings || {});
  return Object.assign({}, SCENARIO_STORAGE, {
    HANGUP_PLAYOUT_GUARD: settings.playout_guard ? 'on' : 'off',
    HANGUP_PLAYOUT_GUARD_MAX_S: String(settings.playout_guard_max_s),
  });
}

/**
 * Runs one case: {hangup_at_ms, outcomes, end_call_offset_ms (absent when no such log line),
 * problems}. Times are relative to the start of the script.
 */
async function replayHangupCase(kase) {
  const rt = new FakeVoxEngine({ storage: storageFor(kase) });
  await rt.startCall();
  const problems = [];
  const t0 = rt.nowMs;
  for (const e of kase.script) {
    await rt.advance(t0 + e.at_ms - rt.nowMs);
    let delivered = true;
    if (e.event === 'audio_starts') delivered = rt.agent.audioStarts();
    else if (e.event === 'audio_stops') delivered = rt.agent.audioStops();
    else if (e.event === 'caller_hangs_up') delivered = rt.caller.remoteHangup();
    else if (e.event === 'agent_closes') {
      delivered = !rt.agent.socketClosed;
      rt.agent.remoteClose(e.code, e.code === 1000 ? 'call ended by agent' : 'abnormal');
    } else {
      const answer = rt.control({ id: END_CALL_ID, action: 'end_call' });
      if (answer.ok !== true) problems.push(`end_call at ${e.at_ms} ms was not accepted: ${JSON.stringify(answer)}`);
    }
    if (!delivered) problems.push(`${e.event} at ${e.at_ms} ms could not happen at that point`);
    await rt.settle();
  }
  await rt.advance(t0 + kase.until_ms - rt.nowMs);
  const hangups = rt.hangupTimes().map((at) => at - t0);
  if (hangups.length > 1) problems.push(`the caller was hung up ${hangups.length} times`);
  const observed = { hangup_at_ms: hangups.length ? hangups[0] : null, outcomes: rt.outcomes(), problems };
  const line = rt.logs.map((l) => OFFSET_LOG.exec(l)).find(Boolean);
  if (line) observed.end_call_offset_ms = line[1] === 'null' ? null : Number(line[1]);
  if (observed.hangup_at_ms !== null) {
    await rt.advance(2000);
    if (rt.count('terminate') !== 1) problems.push('the session ended but did not terminate exactly once');
  }
  for (const error of rt.errors) problems.push(`handler error: ${String(error)}`);
  for (const violation of rt.violations) problems.push(`violation: ${violation}`);
  return observed;
}

/** Problems with what was observed against `expect` (empty when it matches). */
function checkHangup(expect, observed) {
  const problems = [];
  if (observed.hangup_at_ms !== expect.hangup_at_ms) problems.push(`hangup_at_ms: expected ${expect.hangup_at_ms}, got ${observed.hangup_at_ms}`);
  const sent = observed.outcomes;
  if (sent.length !== expect.outcomes.length) problems.push(`outcomes: expected ${expect.outcomes.length}, sent ${JSON.stringify(sent)}`);
  expect.outcomes.forEach((wanted, i) => {
    const got = sent[i] || {};
    for (const [key, value] of Object.entries(wanted)) {
      if (JSON.stringify(got[key]) !== JSON.stringify(value)) problems.push(`outcomes[${i}].${key}: expected ${JSON.stringify(value)}, got ${JSON.stringify(got[key])}`);
    }
    if (got.vox_event !== 'action_outcome' || got.id !== END_CALL_ID) problems.push(`outcomes[${i}] is not an outcome of ${END_CALL_ID}`);
  });
  if ('end_call_offset_ms' in expect !== 'end_call_offset_ms' in observed || observed.end_call_offset_ms !== expect.end_call_offset_ms) {
    problems.push(`end_call_offset_ms: expected ${JSON.stringify(expect.end_call_offset_ms)}, logged ${JSON.stringify(observed.end_call_offset_ms)}`);
  }
  return problems;
}

module.exports = { loadHangupCases, lintHangupCase, replayHangupCase, checkHangup, HANGUP_CASES_PATH, EVENTS, END_CALL_ID };
