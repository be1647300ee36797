'use strict';
/**
 * Replays voxengine/contract/destination_cases.json (format: voxengine/contract/README.md,
 * "Destination cases") against scenario.js in the fake VoxEngine runtime: named destinations and
 * their fallbacks, answering-machine detection on the transfer leg, the keypad both ways and the
 * call-length backstop. Lint, replay and check are separate, as in outcome_replay.js.
 */

const fs = require('node:fs');
const path = require('node:path');
const { FakeVoxEngine, SCENARIO_STORAGE, BEHAVIOURS } = require('./fake_voxengine');
const { endState, isPlainObject, lintScript, TRANSFER_ID, END_CALL } = require('./outcome_replay');

const DESTINATION_CASES_PATH = path.join(__dirname, '..', 'contract', 'destination_cases.json');
const EVENTS = ['caller_tone', 'agent_dtmf', 'caller_hangs_up', 'end_call', 'agent_gone'];
/** Case settings → ApplicationStorage keys (a replayer sets only the keys a case gives). */
const SETTING_KEYS = {
  ring_timeout_s: 'TRANSFER_RING_TIMEOUT_S',
  whisper: 'TRANSFER_WHISPER',
  whisper_timeout_s: 'TRANSFER_WHISPER_TIMEOUT_S',
  amd: 'TRANSFER_AMD',
  amd_timeout_s: 'TRANSFER_AMD_TIMEOUT_S',
  max_call_s: 'MAX_CALL_S',
};
const CALLER_WITH = ['agent', 'target', 'nobody'];
const DEFAULT_TAIL_MS = 600;
/** The base storage: the required keys without TRANSFER_NUMBER (each case says its targets). */
const BASE_STORAGE = Object.freeze(Object.fromEntries(Object.entries(SCENARIO_STORAGE).filter(([key]) => key !== 'TRANSFER_NUMBER')));

function loadDestinationCases() {
  return JSON.parse(fs.readFileSync(DESTINATION_CASES_PATH, 'utf8'));
}

function untilOf(kase) {
  if (kase.until_ms !== undefined) return kase.until_ms;
  return kase.script.reduce((max, e) => Math.max(max, e.at_ms), 0) + DEFAULT_TAIL_MS;
}

/** Problems with the shape of a case (empty when well-formed). */
function lintDestinationCase(kase) {
  if (!isPlainObject(kase)) return ['a case must be an object'];
  const problems = [];
  if (typeof kase.name !== 'string' || !kase.name) problems.push('name must be a non-empty string');
  if (typeof kase.summary !== 'string') problems.push('summary must be a string');
  for (const [key, value] of Object.entries(kase.settings || {})) {
    if (!(key in SETTING_KEYS)) problems.push(`unknown setting ${key}`);
    else if (key === 'whisper' || key === 'amd' ? typeof value !== 'boolean' : !(typeof value === 'number' && value > 0)) problems.push(`bad setting ${key}`);
  }
  if (kase.transfer_number !== undefined && typeof kase.transfer_number !== 'string') problems.push('transfer_number must be a string');
  if (kase.destinations !== undefined && !(typeof kase.destinations === 'string' || isPlainObject(kase.destinations))) problems.push('destinations must be an object or a string');
  if (kase.transfer_number === undefined && kase.destinations === undefined) problems.push('a case needs transfer_number or destinations');
  if (!(kase.request === null || isPlainObject(kase.request))) problems.push('request must be an object or null');
  for (const [name, behaviour] of Object.entries(kase.behaviours || {})) {
    if (!BEHAVIOURS[behaviour]) problems.push(`behaviours.${name}: unknown behaviour ${behaviour}`);
    else if (targetOf(kase, name) === null) problems.push(`behaviours.${name}: no such destination in the case`);
  }
  if (!Array.isArray(kase.script)) return problems.concat('script must be an array');
  const script = lintScript(kase.script, EVENTS, {
    caller_tone: { ok: (e) => typeof e.tone === 'string', what: 'a tone' },
    agent_dtmf: { ok: (e) => typeof e.digits === 'string', what: 'digits' },
  });
  problems.push(...script.problems);
  const previous = script.last;
  if (kase.until_ms !== undefined && !(Number.isInteger(kase.until_ms) && kase.until_ms > previous)) problems.push('until_ms must be an integer after the last event');
  const expect = kase.expect;
  if (!isPlainObject(expect)) return problems.concat('expect must be an object');
  if (!Array.isArray(expect.outcomes) || !expect.outcomes.every((o) => isPlainObject(o) && typeof o.status === 'string')) problems.push('expect.outcomes must be a list of objects with a status');
  if (!Array.isArray(expect.dialled) || !expect.dialled.every((d) => isPlainObject(d) && typeof d.to === 'string')) problems.push('expect.dialled must be a list of {to, caller_id}');
  if (!(expect.whisper === null || typeof expect.whisper === 'string')) problems.push('expect.whisper must be a string or null');
  if (!CALLER_WITH.includes(expect.caller_with)) problems.push(`expect.caller_with must be one of ${CALLER_WITH.join(', ')}`);
  if (typeof expect.session_ended !== 'boolean') problems.push('expect.session_ended must be a boolean');
  for (const key of ['digits', 'keys_to_agent']) if (expect[key] !== undefined && !Array.isArray(expect[key])) problems.push(`expect.${key} must be a list`);
  return problems;
}

/** The number or URI a case's destination name dials, or null. */
function targetOf(kase, name) {
  const table = isPlainObject(kase.destinations) ? kase.destinations : {};
  const entry = Object.prototype.hasOwnProperty.call(table, name) ? table[name] : undefined;
  if (typeof entry === 'string') return entry;
  if (isPlainObject(entry) && typeof entry.to === 'string') return entry.to;
  if (name === 'default' && typeof kase.transfer_number === 'string') return kase.transfer_number;
  return null;
}

function storageFor(kase) {
  const storage = Object.assign({}, BASE_STORAGE);
  if (kase.transfer_number !== undefined) storage.TRANSFER_NUMBER = kase.transfer_number;
  if (kase.destinations !== undefined) storage.TRANSFER_DESTINATIONS = typeof kase.destinations === 'string' ? kase.destinations : JSON.stringify(kase.destinations);
  for (const [key, value] of Object.entries(kase.settings || {})) storage[SETTING_KEYS[key]] = typeof value === 'boolean' ? (value ? 'on' : 'off') : String(value);
  return storage;
}

/** Runs one case; returns what was observed (the expect fields) plus {problems, rt}. */
async function replayDestinationCase(kase) {
  const behaviours = {};
  for (const [name, behaviour] of Object.entries(kase.behaviours || {})) behaviours[targetOf(kase, name)] = behaviour;
  const rt = new FakeVoxEngine({ storage: storageFor(kase), behaviours, instantPlayback: ['caller'] });
  await rt.startCall();
  const problems = [];
  const t0 = rt.nowMs;
  let response = null;
  if (kase.request !== null) {
    response = rt.control(Object.assign({ id: TRANSFER_ID, action: 'call_transfer', summary: kase.summary }, kase.request || {}));
    await rt.settle();
  }
  for (const e of kase.script) {
    await rt.advance(t0 + e.at_ms - rt.nowMs);
    let delivered = true;
    if (e.event === 'caller_tone') delivered = rt.caller.tone(e.tone);
    else if (e.event === 'agent_dtmf') delivered = rt.agent.agentDtmf(e.digits);
    else if (e.event === 'caller_hangs_up') delivered = rt.caller.remoteHangup();
    else if (e.event === 'agent_gone') {
      delivered = !rt.agent.socketClosed;
      rt.agent.remoteClose(1006, 'agent gone (replay)');
    } else if (e.event === 'end_call') {
      const answer = rt.control(END_CALL);
      if (answer.ok !== true) problems.push(`end_call at ${e.at_ms} ms was not accepted: ${JSON.stringify(answer)}`);
    }
    if (!delivered) problems.push(`${e.event} at ${e.at_ms} ms could not happen at that point`);
    await rt.settle();
  }
  await rt.advance(t0 + untilOf(kase) - rt.nowMs);

  const scripted = kase.script.some((e) => e.event === 'end_call');
  for (const other of rt.outcomes().filter((o) => !(o && o.id === TRANSFER_ID))) {
    if (!(scripted && other.id === END_CALL.id && other.status === 'completed')) problems.push(`an outcome that is neither the transfer's nor the end_call's completed: ${JSON.stringify(other)}`);
  }
  const targetLegs = new Set(rt.consults.map((leg) => leg.name));
  const whispers = rt.effects.filter((x) => x.type === 'say' && targetLegs.has(x.leg)).map((x) => x.text);
  if (whispers.length > 1) problems.push(`more than one thing was said to the targets: ${JSON.stringify(whispers)}`);
  const dialled = rt.effects
    .filter((x) => x.type === 'callPSTN' || x.type === 'callSIP')
    .map((x) => (x.type === 'callPSTN' ? { to: x.number, caller_id: x.callerid } : { to: x.to, caller_id: x.parameters && x.parameters.callerid }));
  const digits = rt.effects.filter((x) => x.type === 'sendDigits').map((x) => ({ leg: x.leg === 'caller' ? 'caller' : 'target', digits: x.digits }));
  const end = await endState(rt, problems);
  return {
    response,
    dialled,
    outcomes: rt.outcomes().filter((o) => o && o.id === TRANSFER_ID),
    whisper: whispers.length ? whispers[0] : null,
    digits,
    keys_to_agent: rt.dtmfSent.map((sent) => sent.parameters && sent.parameters.dtmf),
    caller_with: end.caller_with,
    session_ended: end.session_ended,
    problems,
    rt,
  };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Problems with what was observed against `expect`: `response` a subset (default {"ok": true}
 * when a request was sent); `dialled` equal, in
 * order; outcomes exactly as many, each expected entry a subset (its `absent` keys must not be
 * there); whisper, caller_with, session_ended equal; digits and keys_to_agent equal when given.
 */
function checkDestinationCase(expect, observed) {
  const problems = [];
  // No request (request: null), no response to compare; else `response` defaults to {"ok": true}.
  const response = observed.response === null && expect.response === undefined ? {} : expect.response || { ok: true };
  for (const [key, value] of Object.entries(response)) {
    if (!observed.response || !same(observed.response[key], value)) problems.push(`response.${key}: expected ${JSON.stringify(value)}, got ${JSON.stringify(observed.response)}`);
  }
  if (!same(expect.dialled, observed.dialled)) problems.push(`dialled: expected ${JSON.stringify(expect.dialled)}, got ${JSON.stringify(observed.dialled)}`);
  const sent = observed.outcomes;
  if (sent.length !== expect.outcomes.length) problems.push(`outcomes: expected ${expect.outcomes.length}, sent ${sent.length}: ${JSON.stringify(sent)}`);
  expect.outcomes.forEach((wanted, i) => {
    const got = sent[i];
    if (!got) return;
    for (const [key, value] of Object.entries(wanted)) {
      if (key === 'absent') {
        for (const gone of value) if (gone in got) problems.push(`outcomes[${i}].${gone}: expected absent, got ${JSON.stringify(got[gone])}`);
      } else if (!same(got[key], value)) problems.push(`outcomes[${i}].${key}: expected ${JSON.stringify(value)}, got ${JSON.stringify(got[key])}`);
    }
  });
  sent.forEach((got, i) => {
    if (!isPlainObject(got) || got.vox_event !== 'action_outcome' || got.action !== 'call_transfer') problems.push(`outcomes[${i}] is not a transfer outcome: ${JSON.stringify(got)}`);
  });
  for (const key of ['whisper', 'caller_with', 'session_ended']) {
    if (observed[key] !== expect[key]) problems.push(`${key}: expected ${JSON.stringify(expect[key])}, got ${JSON.stringify(observed[key])}`);
  }
  for (const key of ['digits', 'keys_to_agent']) {
    if (expect[key] !== undefined && !same(expect[key], observed[key])) problems.push(`${key}: expected ${JSON.stringify(expect[key])}, got ${JSON.stringify(observed[key])}`);
  }
  return problems;
}

module.exports = {
  loadDestinationCases, lintDestinationCase, replayDestinationCase, checkDestinationCase, storageFor, targetOf, untilOf,
  DESTINATION_CASES_PATH, EVENTS, SETTING_KEYS,
};
