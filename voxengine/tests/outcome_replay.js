'use strict';
/**
 * Replays voxengine/contract/outcome_cases.json (format: voxengine/contract/README.md, "Outcome
 * cases") against scenario.js in the fake VoxEngine runtime. Split as contract_replay.js is:
 * linting a case, running it (replayOutcomeCase) and judging what was observed (checkOutcome) are
 * separate, so the checker can be tested on its own.
 */

const fs = require('node:fs');
const path = require('node:path');
const { FakeVoxEngine, SCENARIO_STORAGE } = require('./fake_voxengine');

const OUTCOME_CASES_PATH = path.join(__dirname, '..', 'contract', 'outcome_cases.json');
const TRANSFER_ID = 'transfer-1';
const END_CALL = Object.freeze({ id: 'end-1', action: 'end_call' });
const EVENTS = ['dial_error', 'ringing', 'answered', 'failed', 'disconnected', 'whisper_done', 'caller_hangs_up', 'end_call', 'agent_gone'];
const SETTINGS = { ring_timeout_s: 30, whisper: true, whisper_timeout_s: 15, amd: true };
const CALLER_WITH = ['agent', 'target', 'nobody'];
/** When `until_ms` is not given, the case is observed this long after its last script event. */
const DEFAULT_TAIL_MS = 600;
/** Real-time replays (the Python emulator) need timers and events apart by at least this much. */
const MIN_GAP_MS = 100;

function loadOutcomeCases() {
  return JSON.parse(fs.readFileSync(OUTCOME_CASES_PATH, 'utf8'));
}

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function settingsOf(kase) {
  return Object.assign({}, SETTINGS, kase.settings || {});
}

/** When the case is observed: `until_ms`, or DEFAULT_TAIL_MS after the last event. */
function untilOf(kase) {
  if (kase.until_ms !== undefined) return kase.until_ms;
  const last = kase.script.reduce((max, e) => Math.max(max, e.at_ms), 0);
  return last + DEFAULT_TAIL_MS;
}

/** When the scenario's own timers are due, for the MIN_GAP_MS check (whether or not they fire). */
function timerTimes(kase) {
  const settings = settingsOf(kase);
  const times = [settings.ring_timeout_s * 1000];
  for (const e of kase.script) if (e.event === 'answered') times.push(e.at_ms + settings.whisper_timeout_s * 1000);
  return times;
}

/** Problems with the shape of a case (empty when well-formed). */
function lintOutcomeCase(kase) {
  const problems = [];
  if (!isPlainObject(kase)) return ['a case must be an object'];
  if (typeof kase.name !== 'string' || !kase.name) problems.push('name must be a non-empty string');
  if (typeof kase.summary !== 'string') problems.push('summary must be a string');
  if (kase.settings !== undefined) {
    if (!isPlainObject(kase.settings)) problems.push('settings must be an object');
    else {
      for (const [key, value] of Object.entries(kase.settings)) {
        if (!(key in SETTINGS)) problems.push(`unknown setting ${key}`);
        else if (typeof SETTINGS[key] === 'boolean' ? typeof value !== 'boolean' : !(typeof value === 'number' && value > 0)) problems.push(`bad setting ${key}`);
      }
    }
  }
  if (!Array.isArray(kase.script)) return problems.concat('script must be an array');
  let previous = 0;
  kase.script.forEach((e, i) => {
    const at = `script[${i}]: `;
    if (!isPlainObject(e) || !EVENTS.includes(e.event)) {
      problems.push(`${at}unknown event`);
      return;
    }
    if (!Number.isInteger(e.at_ms) || e.at_ms < 0 || e.at_ms >= 2000) problems.push(`${at}at_ms must be an integer in [0, 2000)`);
    if (e.at_ms < previous) problems.push(`${at}events must be in time order`);
    previous = e.at_ms;
    if (e.event === 'failed' && !Number.isInteger(e.code)) problems.push(`${at}failed needs an integer code`);
    if (e.event === 'dial_error' && (i !== 0 || e.at_ms !== 0)) problems.push(`${at}dial_error must be the first event, at 0 ms`);
  });
  if (kase.until_ms !== undefined && !(Number.isInteger(kase.until_ms) && kase.until_ms >= previous)) problems.push('until_ms must be an integer after the last event');
  if (problems.length) return problems;
  const moments = kase.script.map((e) => e.at_ms).concat(untilOf(kase));
  for (const due of timerTimes(kase)) {
    if (due < untilOf(kase) + MIN_GAP_MS && moments.some((m) => Math.abs(m - due) < MIN_GAP_MS)) {
      problems.push(`a timer due at ${due} ms is within ${MIN_GAP_MS} ms of an event or of the end`);
    }
  }
  const expect = kase.expect;
  if (!isPlainObject(expect)) return problems.concat('expect must be an object');
  if (!Array.isArray(expect.outcomes) || !expect.outcomes.every((o) => isPlainObject(o) && typeof o.status === 'string')) {
    problems.push('expect.outcomes must be a list of objects with a status');
  }
  if (!(expect.whisper === null || typeof expect.whisper === 'string')) problems.push('expect.whisper must be a string or null');
  if (!CALLER_WITH.includes(expect.caller_with)) problems.push(`expect.caller_with must be one of ${CALLER_WITH.join(', ')}`);
  if (typeof expect.session_ended !== 'boolean') problems.push('expect.session_ended must be a boolean');
  return problems;
}

/** The ApplicationStorage a case's settings map to (only the settings it gives). */
function storageFor(kase) {
  const storage = Object.assign({}, SCENARIO_STORAGE);
  const settings = kase.settings || {};
  if (settings.ring_timeout_s !== undefined) storage.TRANSFER_RING_TIMEOUT_S = String(settings.ring_timeout_s);
  if (settings.whisper !== undefined) storage.TRANSFER_WHISPER = settings.whisper ? 'on' : 'off';
  if (settings.whisper_timeout_s !== undefined) storage.TRANSFER_WHISPER_TIMEOUT_S = String(settings.whisper_timeout_s);
  if (settings.amd !== undefined) storage.TRANSFER_AMD = settings.amd ? 'on' : 'off';
  return storage;
}

/**
 * Runs one case; returns what was observed:
 * {outcomes, whisper, caller_with, session_ended, problems, rt}. `problems` lists what went wrong
 * while replaying (an event that could not happen, a refused request, a broken invariant).
 */
async function replayOutcomeCase(kase) {
  // The caller's apology (the only thing said to the caller) ends at once: nothing drives it here.
  const rt = new FakeVoxEngine({ storage: storageFor(kase), instantPlayback: ['caller'] });
  await rt.startCall();
  const problems = [];
  const t0 = rt.nowMs;
  const script = kase.script;
  if (script.length && script[0].event === 'dial_error') rt.throwNext('callPSTN', 'dial error (replay)');
  const request = { id: TRANSFER_ID, action: 'call_transfer', summary: kase.summary };
  const accepted = rt.control(request);
  if (accepted.ok !== true) problems.push(`the transfer was not accepted: ${JSON.stringify(accepted)}`);
  await rt.settle();

  for (const e of script) {
    await rt.advance(t0 + e.at_ms - rt.nowMs);
    const target = rt.consult;
    let delivered = true;
    switch (e.event) {
      case 'dial_error':
        break; // armed before the request
      case 'ringing':
        delivered = Boolean(target) && target.ring();
        break;
      case 'answered':
        delivered = Boolean(target) && target.remoteAnswer();
        break;
      case 'failed':
        delivered = Boolean(target) && target.remoteFail(e.code, `SIP ${e.code}`);
        break;
      case 'disconnected':
        delivered = Boolean(target) && target.remoteHangup();
        break;
      case 'whisper_done':
        delivered = Boolean(target) && target.playbackFinished();
        break;
      case 'caller_hangs_up':
        delivered = rt.caller.remoteHangup();
        break;
      case 'end_call': {
        const answer = rt.control(END_CALL);
        if (answer.ok !== true) problems.push(`end_call at ${e.at_ms} ms was not accepted: ${JSON.stringify(answer)}`);
        break;
      }
      case 'agent_gone':
        delivered = !rt.agent.socketClosed;
        rt.agent.remoteClose(1006, 'agent gone (replay)');
        break;
      default:
        delivered = false;
    }
    if (!delivered) problems.push(`${e.event} at ${e.at_ms} ms could not happen at that point`);
    await rt.settle();
  }
  await rt.advance(t0 + untilOf(kase) - rt.nowMs);

  // expect.outcomes lists the transfer's outcomes; the only other one allowed is the `completed`
  // of a scripted end_call (docs/control-contract.md, "The call chain").
  const sent = rt.outcomes().filter((o) => o && o.id === TRANSFER_ID);
  for (const other of rt.outcomes().filter((o) => !(o && o.id === TRANSFER_ID))) {
    const scripted = script.some((e) => e.event === 'end_call');
    if (!(scripted && other.id === END_CALL.id && other.action === 'end_call' && other.status === 'completed')) {
      problems.push(`an outcome that is neither the transfer's nor the end_call's completed: ${JSON.stringify(other)}`);
    }
  }
  const targetLegs = new Set(rt.consults.map((leg) => leg.name));
  const whispers = rt.effects.filter((x) => x.type === 'say' && targetLegs.has(x.leg)).map((x) => x.text);
  if (whispers.length > 1) problems.push(`more than one thing was said to the target: ${JSON.stringify(whispers)}`);
  // The caller never hears the whisper, and the target hears it only before the bridge.
  const heard = (leg) => rt.audio.filter((a) => a.leg === leg).map((a) => a.source);
  if (kase.summary && heard('caller').some((source) => source === `say:${kase.summary}` || (whispers[0] && source === `say:${whispers[0]}`))) {
    problems.push('the caller heard the whisper');
  }
  for (const leg of targetLegs) {
    const sources = heard(leg);
    const bridged = sources.indexOf('caller');
    if (bridged >= 0 && sources.slice(bridged).some((source) => source && source.startsWith('say:'))) problems.push(`${leg} heard a whisper after the bridge`);
  }
  const end = await endState(rt, problems);
  return { outcomes: sent, whisper: whispers.length ? whispers[0] : null, caller_with: end.caller_with, session_ended: end.session_ended, problems, rt };
}

/**
 * Where the call stands at the end of a replay: {caller_with, session_ended}. Adds to `problems`
 * what no case may leave behind: a target leg up but not with the caller, an ended session that
 * does not terminate exactly once (it advances the clock to see), a handler error, a violation.
 */
async function endState(rt, problems) {
  const targetLegs = new Set(rt.consults.map((leg) => leg.name));
  const sessionEnded = rt.evaluate('session.phase') === 'ended';
  let callerWith = 'nobody';
  if (!rt.caller.ended && !sessionEnded) {
    const source = rt.hearing('caller');
    if (source === 'agent' && !rt.agent.socketClosed) callerWith = 'agent';
    else if (targetLegs.has(source) && !rt.consults.find((leg) => leg.name === source).ended) callerWith = 'target';
  }
  // No target leg is left ringing or connected unless the caller is with it.
  for (const leg of rt.consults) {
    if (!leg.ended && !(callerWith === 'target' && rt.hearing('caller') === leg.name)) problems.push(`${leg.name} is still up but not with the caller`);
  }
  if (sessionEnded) {
    await rt.advance(2000); // the session must then terminate exactly once
    if (rt.count('terminate') !== 1) problems.push('the session ended but did not terminate exactly once');
  }
  for (const error of rt.errors) problems.push(`handler error: ${String(error)}`);
  for (const violation of rt.violations) problems.push(`violation: ${violation}`);
  return { caller_with: callerWith, session_ended: sessionEnded };
}

/**
 * Problems with what was observed against `expect` (empty when it matches): the outcomes sent
 * must be exactly as many as expected and in order, each expected entry a subset of the one sent,
 * and every one sent a well-formed outcome of the transfer; whisper, caller_with and
 * session_ended must be equal.
 */
function checkOutcome(expect, observed) {
  const problems = [];
  const sent = observed.outcomes;
  if (sent.length !== expect.outcomes.length) {
    problems.push(`outcomes: expected ${expect.outcomes.length}, sent ${sent.length}: ${JSON.stringify(sent)}`);
  }
  expect.outcomes.forEach((wanted, i) => {
    const got = sent[i];
    if (!got) return;
    for (const [key, value] of Object.entries(wanted)) {
      if (JSON.stringify(got[key]) !== JSON.stringify(value)) problems.push(`outcomes[${i}].${key}: expected ${JSON.stringify(value)}, got ${JSON.stringify(got[key])}`);
    }
  });
  sent.forEach((got, i) => {
    if (!isPlainObject(got) || got.vox_event !== 'action_outcome' || got.id !== TRANSFER_ID || got.action !== 'call_transfer') {
      problems.push(`outcomes[${i}] is not an outcome of ${TRANSFER_ID}: ${JSON.stringify(got)}`);
    }
  });
  for (const key of ['whisper', 'caller_with', 'session_ended']) {
    if (observed[key] !== expect[key]) problems.push(`${key}: expected ${JSON.stringify(expect[key])}, got ${JSON.stringify(observed[key])}`);
  }
  return problems;
}

/**
 * Problems with a case's `script` of timed events, for the hang-up and destination cases: each
 * event one of `events`, `at_ms` an integer not before the previous one, and the field an event
 * needs (`needs[event]`: `{ ok(e), what }`). Returns the problems and the last event's `at_ms`.
 */
function lintScript(script, events, needs) {
  const problems = [];
  let previous = 0;
  script.forEach((e, i) => {
    const at = `script[${i}]: `;
    if (!isPlainObject(e) || !events.includes(e.event)) return problems.push(`${at}unknown event`);
    if (!Number.isInteger(e.at_ms) || e.at_ms < previous) problems.push(`${at}at_ms must be an integer, in time order`);
    const need = needs[e.event];
    if (need && !need.ok(e)) problems.push(`${at}${e.event} needs ${need.what}`);
    previous = e.at_ms;
    return undefined;
  });
  return { problems, last: previous };
}

module.exports = {
  loadOutcomeCases, lintOutcomeCase, replayOutcomeCase, checkOutcome, storageFor, untilOf, endState, isPlainObject, lintScript,
  OUTCOME_CASES_PATH, EVENTS, TRANSFER_ID, END_CALL, DEFAULT_TAIL_MS, MIN_GAP_MS,
};
