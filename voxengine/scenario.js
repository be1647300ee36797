/**
 * VoxEngine scenario: an inbound call answered by a Cartesia Line agent, with an HTTP control
 * plane through which the agent asks for telephony actions (end_call, call_transfer).
 *
 * Flow (as in Voximplant's "Cartesia Line Agents: function calling" example):
 *   AppEvents.Started      → keep e.accessSecureURL, the per-session control URL;
 *   AppEvents.CallAlerting → answer, read settings from ApplicationStorage, create the Cartesia
 *                            Agents client, bridge media, start the agent with the control URL in
 *                            its metadata (vox_session_control_url);
 *   AppEvents.HttpRequest  → the agent's control requests, per docs/control-contract.md;
 *   after an accepted call_transfer, each milestone (ringing, connected, failed) goes back to the
 *   agent as a custom event on its WebSocket (the contract's "Outcome events"), and a failed
 *   transfer leaves the caller with the agent.
 *
 * The file has three parts:
 *   1. settings and constants;
 *   2. the control logic: pure functions, no telephony (validation, HMAC check, idempotency,
 *      dispatch); it never throws and only touches the call through the `deps` it is given;
 *   3. the telephony glue: one session object, its legs and the VoxEngine event handlers.
 *
 * API names follow Voximplant's published typings (voxengine.d.ts, VoxEngine 7.57) and docs.
 * Where the docs are silent, the assumption is written next to the code as "ASSUMPTION:".
 */

require(Modules.Cartesia);
require(Modules.ApplicationStorage);
// Answering-machine detection on the transfer leg (AMD.create, AMD.Events.DetectionComplete). The
// published typings (voxengine.d.ts, voxengine-ci 28.0.0) declare the AMD namespace but no
// Modules.AMD; public scenarios load it with require(Modules.AMD). ASSUMPTION: load it when the
// platform names it; without it, AMD is reported unavailable at the call's start and transfers
// bridge without detection (see resolveAmd). Never thrown: a failed require must not stop the scenario.
try {
  if (typeof Modules !== 'undefined' && Modules.AMD) require(Modules.AMD);
} catch (err) {
  Logger.write('[cartesia-control] AMD module not loaded: ' + String(err && err.message).slice(0, 200));
}

// ---------------------------------------------------------------------------------------------
// 1. Settings and constants
// ---------------------------------------------------------------------------------------------

/** Record the caller leg (stereo: caller left, what the caller hears right). */
const RECORD_CALLS = false;

/** Cartesia API version sent by the Agents client (the value Voximplant's example uses). */
const CARTESIA_VERSION = '2025-04-16';

/** ApplicationStorage keys. VOX_CONTROL_SECRET is optional: when set, control requests must be signed. */
const STORAGE_KEYS = {
  apiKey: 'CARTESIA_API_KEY',
  agentId: 'CARTESIA_AGENT_ID',
  transferNumber: 'TRANSFER_NUMBER',
  pstnCallerId: 'PSTN_CALLER_ID',
  controlSecret: 'VOX_CONTROL_SECRET',
  // Transfer tuning, all optional (see readTransferOptions):
  ringTimeout: 'TRANSFER_RING_TIMEOUT_S',
  whisper: 'TRANSFER_WHISPER',
  whisperTimeout: 'TRANSFER_WHISPER_TIMEOUT_S',
  whisperVoice: 'TRANSFER_WHISPER_VOICE',
  // Named destinations with fallbacks (see parseDestinations) and answering-machine detection:
  destinations: 'TRANSFER_DESTINATIONS',
  amd: 'TRANSFER_AMD',
  amdTimeout: 'TRANSFER_AMD_TIMEOUT_S',
  amdModel: 'TRANSFER_AMD_MODEL',
  // Hang-up tuning, optional (see readHangupOptions):
  playoutGuard: 'HANGUP_PLAYOUT_GUARD',
  playoutGuardMax: 'HANGUP_PLAYOUT_GUARD_MAX_S',
  // The hard call-length backstop, optional (see readMaxCallMs):
  maxCall: 'MAX_CALL_S',
};

/**
 * Settings without which the call is not taken. A transfer target is required too (TRANSFER_NUMBER
 * or TRANSFER_DESTINATIONS, see missingSettings): the agent offers transfers, and a
 * misconfiguration should fail the first test call, not a caller mid-call.
 */
const REQUIRED_SETTINGS = ['apiKey', 'agentId', 'pstnCallerId'];
const TRANSFER_TARGET_SETTINGS = ['transferNumber', 'destinations'];

/**
 * What the caller hears when a transfer fails and the agent is gone (nobody is left to take the
 * caller back), before we hang up. While the agent is there, it is told instead and speaks itself.
 */
const TRANSFER_BUSY_MESSAGE = 'Sorry, the line is busy right now. Please call again later. Goodbye.';
const TRANSFER_FAILED_MESSAGE = 'Sorry, I could not connect your call. Please call again later. Goodbye.';

/**
 * Transfer tuning and its ApplicationStorage limits. A value outside (0, max], or not a plain
 * decimal number of seconds, is logged and replaced by the default.
 *   ring timeout: VoxEngine.callPSTN has no ring-timeout option (CallPSTNParameters: amd,
 *     followDiversion only), so a timer hangs the ringing leg up; the network itself gives up
 *     with Failed 408 after about 60 s ("can trigger the Failed event in 60 sec").
 *   whisper: the summary said to the target before the bridge, bounded by its own timeout in
 *     case PlaybackFinished never comes.
 */
const TRANSFER_DEFAULTS = { ringTimeoutS: 30, whisper: true, whisperTimeoutS: 15, amd: true, amdTimeoutS: 5, amdModel: 'US' };
const TRANSFER_MAX_RING_TIMEOUT_S = 120;
const TRANSFER_MAX_WHISPER_TIMEOUT_S = 60;
/**
 * AMD.AMDParameters.timeout: "Detection timeout in milliseconds ... only triggered after the
 * CallEvents.Connected event. The default value is 6500. Must not be less than 0 or greater than
 * 20000" (voxengine.d.ts). The scenario's own timer bounds the wait as well (a detection that
 * never reports counts as a human).
 */
const TRANSFER_MAX_AMD_TIMEOUT_S = 20;

/**
 * TRANSFER_DESTINATIONS (docs/control-contract.md): name → "+E.164" / "sip:…", or
 * {to, ring_timeout_s, caller_id, fallback, extension}. Names are what the agent may ask for.
 * Extension symbols: Call.sendDigits takes "Any combination of 0-9, *, #, p (pause) symbols"
 * (voxengine.d.ts); `w`, the dialler's usual wait, is accepted and sent as `p`.
 */
const DESTINATION = {
  NAME: /^[a-z0-9_-]{1,64}$/,
  E164: /^\+[1-9]\d{1,14}$/,
  SIP: /^sips?:[^\s]{1,250}$/,
  EXTENSION: /^[0-9*#pw]{1,32}$/,
  FIELDS: ['to', 'ring_timeout_s', 'caller_id', 'fallback', 'extension'],
  MIN_RING_TIMEOUT_S: 1,
  MAX_FALLBACKS: 10,
  // The target when the request names none (today's TRANSFER_NUMBER is this destination).
  DEFAULT_NAME: 'default',
};

/**
 * Call.sendDigits has no completion event. ASSUMPTION: each symbol takes at most this long to play
 * (a tone of ~100 ms and its gap; a `p` pause is not documented), so the whisper starts this long
 * per symbol after the extension was sent, never over the tones.
 */
const EXTENSION_MS_PER_SYMBOL = 300;

/** DTMF the scenario passes on: Call.ToneReceived "tone ... 0-9,*,#" (voxengine.d.ts). */
const DTMF_DIGITS = /^[0-9*#]{1,32}$/;

/** MAX_CALL_S: the hard limit of a call, seconds from the answer (off when unset). */
const MAX_CALL_LIMIT_S = 86400;

/**
 * Call.say: "If text length exceeds 1500 characters the PlaybackFinished event is triggered with
 * error description" (voxengine.d.ts, Call.say). A longer summary (the contract allows 2000) is
 * cut to 1500 UTF-16 units, never inside a surrogate pair.
 */
const WHISPER_MAX_LENGTH = 1500;

/** CallEvents.Failed codes → the contract's failure reasons; any other code is 'error'. */
const FAILURE_REASON_BY_CODE = { 486: 'busy', 600: 'busy', 408: 'no_answer', 480: 'no_answer', 603: 'rejected' };

/**
 * The playout guard (docs/control-contract.md, "The call chain"): with it on, an accepted end_call
 * whose goodbye is still playing at VoxEngine waits for Cartesia.Events.WebSocketMediaEnded, at
 * most HANGUP_PLAYOUT_GUARD_MAX_S, before the caller is hung up.
 */
const HANGUP_DEFAULTS = { playoutGuard: true, playoutGuardMaxS: 3 };
const HANGUP_MAX_PLAYOUT_GUARD_S = 10;

/**
 * WebSocketMediaEnded is "Triggered after the end of the audio stream ... (1 second of silence)"
 * (Voximplant's Cartesia Events reference): the agent's audio stopped this long before the event.
 */
const MEDIA_ENDED_SILENCE_MS = 1000;

/**
 * Cartesia closes with code 1000 "call ended by agent" when the agent ends the call (Calls API,
 * cartesia-ai/docs web-calls.mdx). Such a close keeps the caller this long for the end_call POST
 * that hangs up (Voximplant's published scenario ignores a 1000 close and leaves the hang-up to
 * the POST); then the scenario hangs up itself, so nobody is stranded.
 */
const NORMAL_CLOSE_CODE = 1000;
const AGENT_CLOSE_GRACE_MS = 3000;

/** Hang up anyway if the goodbye message never reports PlaybackFinished. */
const ANNOUNCEMENT_TIMEOUT_MS = 20000;

/**
 * Delay between hanging up and VoxEngine.terminate(). The control response that triggered the
 * hangup (and a quick retry of it) must still be deliverable; terminating inside the HTTP handler
 * could tear the session down before VoxEngine sends the response.
 */
const TERMINATE_GRACE_MS = 1000;

/** Limits and codes of docs/control-contract.md. */
const CONTROL = {
  MAX_BODY_BYTES: 16 * 1024,
  ID_PATTERN: /^[A-Za-z0-9_-]{1,128}$/,
  MAX_SUMMARY_CODE_POINTS: 2000,
  SIGNATURE_WINDOW_S: 300,
  // `t` as sent (digits only) and 64 hex digits; the exact form of the contract, nothing else.
  SIGNATURE_PATTERN: /^t=(\d{1,15}),v1=([0-9A-Fa-f]{64})$/,
  ACTIONS: ['end_call', 'call_transfer'],
  // Per-session memory of answered ids. A call sees a handful of actions; the cap only keeps a
  // flood of valid ids from growing memory. Effects stay single-shot through the call state anyway.
  MAX_REMEMBERED_IDS: 256,
};

/** RFC 4231 test case 2, used to check that Crypto.hmac_sha256 returns lowercase hex. */
const HMAC_SELF_TEST = {
  key: 'Jefe',
  data: 'what do ya want for nothing?',
  hex: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
};

// ---------------------------------------------------------------------------------------------
// 2. Control logic (pure: no VoxEngine calls; everything it needs comes in through `deps`)
// ---------------------------------------------------------------------------------------------

function hasOwn(object, key) {
  return Object.prototype.hasOwnProperty.call(object, key);
}

/**
 * Header names, lowercased, mapped to trimmed values. An empty value counts as absent.
 * ASSUMPTION: VoxEngine's typings describe e.headers as an array of {key, value} (X- headers
 * only); a plain {name: value} object is accepted as well. The first occurrence of a name wins.
 */
function normalizeHeaders(raw) {
  const headers = Object.create(null);
  const add = (name, value) => {
    if (typeof name !== 'string' || typeof value !== 'string') return;
    const key = name.trim().toLowerCase();
    const trimmed = value.trim();
    if (key && trimmed && !(key in headers)) headers[key] = trimmed;
  };
  if (Array.isArray(raw)) {
    for (const entry of raw) {
      if (entry && typeof entry === 'object') add(entry.key, entry.value);
    }
  } else if (raw && typeof raw === 'object') {
    for (const name of Object.keys(raw)) add(name, raw[name]);
  }
  return headers;
}

/** True when `text` encodes to more than `limit` UTF-8 bytes (counted without allocating). */
function exceedsUtf8Bytes(text, limit) {
  if (text.length > limit) return true; // every UTF-16 unit is at least one byte
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4; // a surrogate pair is one 4-byte code point
      i++;
    } else bytes += 3; // the rest of the BMP; a lone surrogate becomes U+FFFD (3 bytes)
    if (bytes > limit) return true;
  }
  return false;
}

/** Unicode code points, so that "2000 characters" means the same in JavaScript and Python. */
function codePointLength(text) {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++;
    count++;
  }
  return count;
}

/** Compares two strings in time that depends only on their length (the MAC is fixed-length). */
function constantTimeEqual(a, b) {
  if (typeof a !== 'string' || typeof b !== 'string' || a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Checks `X-Vox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
 * Returns null when valid, else the refusal code. The MAC is checked before the clock window so
 * that only an authentic sender learns that its clock (or a replay) is off.
 */
function checkSignature(headerValue, body, secret, nowSeconds, hmacSha256Hex) {
  if (!headerValue) return 'missing_signature';
  const match = CONTROL.SIGNATURE_PATTERN.exec(headerValue);
  if (!match) return 'bad_signature';
  const timestamp = match[1];
  const expected = String(hmacSha256Hex(secret, timestamp + '.' + body)).toLowerCase();
  if (!constantTimeEqual(expected, match[2].toLowerCase())) return 'bad_signature';
  if (Math.abs(nowSeconds - Number(timestamp)) > CONTROL.SIGNATURE_WINDOW_S) return 'stale_signature';
  return null;
}

/** The body as a JSON object, or null (not JSON, or an array, number, string, boolean, null). */
function parseJsonObject(body) {
  let value;
  try {
    value = JSON.parse(body);
  } catch (err) {
    return null;
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : null;
}

/** The request's id when well-formed and consistent with X-Idempotency-Key, else null. */
function readRequestId(command, idempotencyKey) {
  const id = hasOwn(command, 'id') ? command.id : undefined;
  if (typeof id !== 'string' || !CONTROL.ID_PATTERN.test(id)) return null;
  if (idempotencyKey !== undefined && idempotencyKey !== id) return null;
  return id;
}

/** Field checks after the id: null when the command is well-formed, else the refusal code. */
function validateCommand(command) {
  if (!hasOwn(command, 'action') || typeof command.action !== 'string') return 'bad_request';
  if (CONTROL.ACTIONS.indexOf(command.action) < 0) return 'unknown_action';
  if (hasOwn(command, 'summary')) {
    const summary = command.summary;
    if (typeof summary !== 'string') return 'bad_request';
    if (codePointLength(summary) > CONTROL.MAX_SUMMARY_CODE_POINTS) return 'bad_request';
  }
  // `destination` names a transfer target; on end_call it means nothing and is ignored, as any
  // unknown field is.
  if (command.action === 'call_transfer' && hasOwn(command, 'destination')) {
    const destination = command.destination;
    if (typeof destination !== 'string' || !DESTINATION.NAME.test(destination)) return 'bad_request';
  }
  return null;
}

/** The destination a call_transfer asks for: its `destination`, or the default one. */
function destinationOf(command) {
  return hasOwn(command, 'destination') ? command.destination : DESTINATION.DEFAULT_NAME;
}

/** Remembers the first answer per id (insertion-ordered; the oldest is forgotten past the cap). */
function createIdempotencyTable(limit) {
  const answers = new Map();
  return {
    get: (id) => answers.get(id),
    remember(id, answer) {
      if (answers.size >= limit) answers.delete(answers.keys().next().value);
      answers.set(id, answer);
    },
  };
}

function refusal(code) {
  return { ok: false, error: code };
}

/**
 * Builds the control request handler. `deps`:
 *   secret()            → undefined until settings are loaded, then the signing secret or null;
 *   nowSeconds()        → the receiver's clock;
 *   hmacSha256Hex(k, d) → lowercase hex HMAC-SHA256;
 *   knownDestination(name) → a transfer may go to this destination (TRANSFER_DESTINATIONS);
 *   agentInControl(action) → the agent may still ask for this action on the call;
 *   transferUnderWay()  → a transfer was accepted and is not finished;
 *   perform(command)    → starts the telephony effect of an accepted command {id, action, summary,
 *                         destination};
 *                         must not throw.
 *
 * The handler takes {method, body, headers (normalized)} and returns {response, id, action}; id
 * and action are set only once they are known to be valid (they are safe to log).
 *
 * Checks run in this order, the first failure decides (the contract's cases pin it):
 *   method → body size → settings loaded → signature → JSON object → id (+ X-Idempotency-Key)
 *   → seen id (duplicate) → action → summary and destination (well-formed) → destination known
 *   → call state.
 * Everything after the id check is remembered per id, refusals included; a refusal before it is
 * not, so a corrected request with the same id still gets its own answer.
 */
function createControlHandler(deps) {
  const seen = createIdempotencyTable(CONTROL.MAX_REMEMBERED_IDS);

  function decide(command, id) {
    const invalid = validateCommand(command);
    if (invalid) return refusal(invalid);
    if (command.action === 'call_transfer' && !deps.knownDestination(destinationOf(command))) {
      return refusal('unknown_destination');
    }
    if (!deps.agentInControl(command.action)) return refusal('call_ended');
    if (command.action === 'call_transfer' && deps.transferUnderWay()) {
      return refusal('transfer_in_progress');
    }
    return { ok: true, id: id, action: command.action };
  }

  return function handleControlRequest(request) {
    const headers = request.headers;
    const early = (code) => ({ response: refusal(code), id: null, action: null });

    if (String(request.method || '').toUpperCase() !== 'POST') return early('method_not_allowed');
    const body = typeof request.body === 'string' ? request.body : '';
    if (exceedsUtf8Bytes(body, CONTROL.MAX_BODY_BYTES)) return early('body_too_large');

    const secret = deps.secret();
    // Before the call is set up the agent has not been given the URL yet, and the signing secret
    // is unknown: nothing can be verified, so nothing is accepted.
    if (secret === undefined) return early('call_ended');
    if (secret) {
      const bad = checkSignature(headers['x-vox-signature'], body, secret, deps.nowSeconds(), deps.hmacSha256Hex);
      if (bad) return early(bad);
    }

    const command = parseJsonObject(body);
    if (!command) return early('bad_json');
    const id = readRequestId(command, headers['x-idempotency-key']);
    if (!id) return early('bad_request');

    const first = seen.get(id);
    if (first) return { response: Object.assign({}, first, { duplicate: true }), id: id, action: first.action || null };

    const response = decide(command, id);
    seen.remember(id, response);
    if (response.ok) deps.perform({ id: id, action: command.action, summary: command.summary || '', destination: destinationOf(command) });
    const knownAction = CONTROL.ACTIONS.indexOf(command.action) >= 0 ? command.action : null;
    return { response: response, id: id, action: knownAction };
  };
}

// --- transfer outcomes (pure as well) -----------------------------------------------------------

/**
 * A number of seconds from ApplicationStorage: {value, problem}. Absent or blank → the default,
 * silently; anything but a plain decimal ("30", "0.5") in (0, max] → the default and a problem to log.
 */
function parseSeconds(raw, fallback, max) {
  const text = typeof raw === 'string' ? raw.trim() : '';
  if (!text) return { value: fallback, problem: null };
  const value = /^\d{1,6}(\.\d{1,6})?$/.test(text) ? Number(text) : NaN;
  if (value > 0 && value <= max) return { value: value, problem: null };
  return { value: fallback, problem: 'not a number of seconds in (0, ' + max + ']' };
}

/**
 * The transfer tuning from the loaded settings (strings or null): {ringTimeoutMs, whisper,
 * whisperTimeoutMs, whisperVoiceName, problems: [text to log]}. Never throws.
 */
function readTransferOptions(settings) {
  const read = settingsReader(settings);
  const voiceName = typeof settings.whisperVoice === 'string' ? settings.whisperVoice.trim() : '';
  return {
    ringTimeoutMs: read.millis('ringTimeout', TRANSFER_DEFAULTS.ringTimeoutS, TRANSFER_MAX_RING_TIMEOUT_S),
    whisper: read.onOff('whisper', TRANSFER_DEFAULTS.whisper),
    whisperTimeoutMs: read.millis('whisperTimeout', TRANSFER_DEFAULTS.whisperTimeoutS, TRANSFER_MAX_WHISPER_TIMEOUT_S),
    whisperVoiceName: voiceName || null,
    amd: read.onOff('amd', TRANSFER_DEFAULTS.amd),
    amdTimeoutMs: read.millis('amdTimeout', TRANSFER_DEFAULTS.amdTimeoutS, TRANSFER_MAX_AMD_TIMEOUT_S),
    amdModelName: typeof settings.amdModel === 'string' && settings.amdModel.trim() ? settings.amdModel.trim() : TRANSFER_DEFAULTS.amdModel,
    problems: read.problems,
  };
}

/** MAX_CALL_S in milliseconds, or null when unset: {value, problems}. Never throws. */
function readMaxCallMs(settings) {
  const parsed = parseSeconds(settings.maxCall, null, MAX_CALL_LIMIT_S);
  const problems = parsed.problem ? [STORAGE_KEYS.maxCall + ' "' + forLog(settings.maxCall, 40) + '" is ' + parsed.problem + '; no call-length limit'] : [];
  return { value: parsed.value === null ? null : Math.round(parsed.value * 1000), problems: problems };
}

/**
 * The transfer destinations in force: TRANSFER_DESTINATIONS (a JSON object, see DESTINATION), plus
 * TRANSFER_NUMBER as the destination "default" unless TRANSFER_DESTINATIONS names one. Returns
 * {table: {name: {name, to, ringTimeoutMs, callerId, fallback: [names], extension}}, problems}.
 * A bad entry is left out (a transfer to it is refused unknown_destination), a bad field of a good
 * entry too; a fallback to a name that is not in the table is dropped. Never throws.
 * `defaults`: {ringTimeoutMs, callerId}.
 */
function parseDestinations(raw, legacyNumber, defaults) {
  const table = Object.create(null);
  const problems = [];
  let entries = {};
  if (typeof raw === 'string' && raw.trim()) {
    const parsed = parseJsonObject(raw);
    if (parsed) entries = parsed;
    else problems.push('not a JSON object; no named destinations');
  }
  const isTarget = (to) => typeof to === 'string' && (DESTINATION.E164.test(to) || DESTINATION.SIP.test(to));
  for (const name of Object.keys(entries)) {
    const shown = '"' + forLog(name, 64) + '"';
    if (!DESTINATION.NAME.test(name)) {
      problems.push(shown + ' left out: a name is 1-64 of a-z 0-9 _ -');
      continue;
    }
    let entry = entries[name];
    if (typeof entry === 'string') entry = { to: entry };
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry) || !isTarget(entry.to)) {
      problems.push(shown + ' left out: "to" must be an E.164 number (+...) or a sip: URI');
      continue;
    }
    const destination = { name: name, to: entry.to, ringTimeoutMs: defaults.ringTimeoutMs, callerId: defaults.callerId, fallback: [], extension: null };
    const bad = (field, what) => problems.push(shown + ': ' + field + ' ' + what + '; ignored');
    for (const field of Object.keys(entry)) if (DESTINATION.FIELDS.indexOf(field) < 0) bad(forLog(field, 40), 'is not a destination field');
    const ring = entry.ring_timeout_s;
    if (ring !== undefined) {
      if (typeof ring === 'number' && ring >= DESTINATION.MIN_RING_TIMEOUT_S && ring <= TRANSFER_MAX_RING_TIMEOUT_S) destination.ringTimeoutMs = Math.round(ring * 1000);
      else bad('ring_timeout_s', 'is not a number of seconds in [' + DESTINATION.MIN_RING_TIMEOUT_S + ', ' + TRANSFER_MAX_RING_TIMEOUT_S + ']');
    }
    if (entry.caller_id !== undefined) {
      if (typeof entry.caller_id === 'string' && DESTINATION.E164.test(entry.caller_id)) destination.callerId = entry.caller_id;
      else bad('caller_id', 'is not an E.164 number');
    }
    if (entry.extension !== undefined) {
      if (typeof entry.extension === 'string' && DESTINATION.EXTENSION.test(entry.extension)) destination.extension = entry.extension;
      else bad('extension', 'is not 1-32 of 0-9 * # p w');
    }
    if (entry.fallback !== undefined) {
      const list = entry.fallback;
      if (Array.isArray(list) && list.length <= DESTINATION.MAX_FALLBACKS && list.every((n) => typeof n === 'string' && DESTINATION.NAME.test(n))) destination.fallback = list.slice();
      else bad('fallback', 'is not a list of at most ' + DESTINATION.MAX_FALLBACKS + ' destination names');
    }
    table[name] = destination;
  }
  if (legacyNumber && !table[DESTINATION.DEFAULT_NAME]) {
    table[DESTINATION.DEFAULT_NAME] = { name: DESTINATION.DEFAULT_NAME, to: legacyNumber, ringTimeoutMs: defaults.ringTimeoutMs, callerId: defaults.callerId, fallback: [], extension: null };
  }
  for (const name of Object.keys(table)) {
    const destination = table[name];
    destination.fallback = destination.fallback.filter((next) => {
      if (table[next]) return true;
      problems.push('"' + name + '": fallback "' + next + '" is not a destination; skipped');
      return false;
    });
  }
  return { table: table, problems: problems };
}

/**
 * The destinations one transfer tries, in order: the named one, then its `fallback` list, each
 * at most once (a fallback naming the destination itself or a repeat is skipped).
 */
function fallbackChain(table, name) {
  const chain = [];
  const first = table[name];
  if (!first) return chain;
  for (const next of [name].concat(first.fallback)) if (chain.indexOf(next) < 0) chain.push(next);
  return chain;
}

/** The hang-up tuning from the loaded settings: {playoutGuard, playoutGuardMaxMs, problems}. Never throws. */
function readHangupOptions(settings) {
  const read = settingsReader(settings);
  return {
    playoutGuard: read.onOff('playoutGuard', HANGUP_DEFAULTS.playoutGuard),
    playoutGuardMaxMs: read.millis('playoutGuardMax', HANGUP_DEFAULTS.playoutGuardMaxS, HANGUP_MAX_PLAYOUT_GUARD_S),
    problems: read.problems,
  };
}

/**
 * Parsers of optional settings that fall back to the default and collect a problem to log:
 * millis(name, defaultS, maxS) for seconds, onOff(name, default) for `on` / `off` (any case).
 */
function settingsReader(settings) {
  const problems = [];
  const complain = (name, what, fallback) => {
    problems.push(STORAGE_KEYS[name] + ' "' + forLog(settings[name], 40) + '" is ' + what + '; using ' + fallback);
  };
  return {
    problems: problems,
    millis(name, fallbackS, maxS) {
      const parsed = parseSeconds(settings[name], fallbackS, maxS);
      if (parsed.problem) complain(name, parsed.problem, fallbackS);
      return Math.round(parsed.value * 1000);
    },
    onOff(name, fallback) {
      const text = typeof settings[name] === 'string' ? settings[name].trim().toLowerCase() : '';
      if (text === 'on' || text === 'off') return text === 'on';
      if (text) complain(name, 'neither on nor off', fallback ? 'on' : 'off');
      return fallback;
    },
  };
}

/** A SIP code as the contract's integer sip_code, or null (absent, not an integer, not 100–699). */
function sipCodeOf(code) {
  const value = typeof code === 'string' && /^\d{3}$/.test(code.trim()) ? Number(code.trim()) : code;
  return typeof value === 'number' && Number.isInteger(value) && value >= 100 && value <= 699 ? value : null;
}

/** The contract's reason for a CallEvents.Failed of the ringing leg. */
function failureReasonForCode(sipCode) {
  return (sipCode !== null && hasOwn(FAILURE_REASON_BY_CODE, sipCode) && FAILURE_REASON_BY_CODE[sipCode]) || 'error';
}

/** What the target hears before the bridge: the summary, cut to what Call.say plays; '' for none. */
function whisperText(summary) {
  if (typeof summary !== 'string' || summary === '') return '';
  if (summary.length <= WHISPER_MAX_LENGTH) return summary;
  let end = WHISPER_MAX_LENGTH;
  const last = summary.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--; // do not split a surrogate pair
  return summary.slice(0, end);
}

/**
 * The custom event's metadata for one milestone (docs/control-contract.md, "Outcome events").
 * `extra`: {destination, attempt} for every transfer outcome; {reason, sipCode} for `failed` and
 * `attempt_failed`; {amd} ('human' / 'timeout', or absent with AMD off) for `connected`;
 * {playoutOffsetMs} (an integer or null) for the statuses that end the caller's hearing of the
 * agent, `connected` and `completed`.
 */
function outcomeMetadata(id, action, status, extra) {
  const metadata = { vox_event: 'action_outcome', id: id, action: action, status: status };
  if (extra.destination !== undefined) {
    metadata.destination = extra.destination;
    metadata.attempt = extra.attempt;
  }
  if (status === 'failed' || status === 'attempt_failed') {
    metadata.reason = extra.reason || 'error';
    if (extra.sipCode !== null && extra.sipCode !== undefined) metadata.sip_code = extra.sipCode;
  }
  if (status === 'connected' && extra.amd) metadata.amd = extra.amd;
  if (status === 'connected' || status === 'completed') metadata.playout_offset_ms = extra.playoutOffsetMs;
  return metadata;
}

/**
 * Where an effect at `effectAtMs` fell against the end of the agent's audio at VoxEngine:
 * effect − (last WebSocketMediaEnded − 1 s of silence). Positive: silence before the effect;
 * negative: audio cut off. null when it cannot be known: no media event seen, or the audio still
 * playing at the effect (a cut-off of unknown length). `media`: {playing, lastEndedAtMs}.
 */
function playoutOffsetMs(media, effectAtMs) {
  if (media.playing || media.lastEndedAtMs === null) return null;
  return Math.round(effectAtMs - (media.lastEndedAtMs - MEDIA_ENDED_SILENCE_MS));
}

// ---------------------------------------------------------------------------------------------
// 3. Telephony glue
// ---------------------------------------------------------------------------------------------

/**
 * Phases: idle → starting → active → transferring → transferred; a failed transfer goes back to
 * active (the agent has the caller again and may ask for another transfer), or, when the agent is
 * gone, → announcing (the caller is told, then hung up); an accepted end_call → hanging_up (the
 * playout guard may hold the hang-up) → ended; a normal close of the agent's socket while active
 * → closing (only an end_call is still accepted, for AGENT_CLOSE_GRACE_MS); → ended from anywhere.
 * The agent controls the call only while active or transferring (plus end_call while closing);
 * after the hand-off to the target it no longer does.
 *
 * While transferring, session.transfer is the transfer under way: {id, summary, chain (the
 * destination names to try, in order), attempt (the current one: {number, destination, leg, amd,
 * ringingSent}), amd (the verdict once a human is on), stage: 'dialling' | 'detecting' |
 * 'extension' | 'whispering' | 'over', and its timers}. Every consult-leg and detector handler is
 * bound to its transfer and attempt and acts only while both are current, so late events of a leg
 * we gave up on (our own hangup comes back as Failed 487 or Disconnected), of an earlier attempt
 * and of an earlier failed transfer change nothing.
 */
const session = {
  phase: 'idle',
  controlUrl: null,
  settings: null,
  transferOptions: null, // readTransferOptions() + whisperVoice (a VoiceList entry or null) + amdModel
  destinations: Object.create(null), // parseDestinations().table: name → destination
  caller: null, // leg: {name, call, ended}
  consult: null, // leg of the transfer target (while dialling, whispering, or bridged)
  transfer: null,
  agent: null, // Cartesia.AgentsClient
  agentBridged: false,
  agentStopped: false, // we closed it
  agentGone: false, // its WebSocket closed or failed without us closing it
  announcementTimer: null,
  hangupOptions: null, // readHangupOptions()
  // The agent's audio at VoxEngine, from Cartesia.Events (see onMediaStarted / onMediaEnded).
  media: { playing: false, lastEndedAtMs: null },
  endCallId: null, // the accepted end_call's id, while hanging_up
  hangupTimer: null, // the playout guard's bound (hanging_up) or the close grace (closing)
  answeredAtMs: null,
  maxCallTimer: null, // MAX_CALL_S, from the answer until the hand-off to a transfer target
  // Keypad traffic, counted (digits are never logged: a keypad entry can be a card number or a PIN).
  dtmf: { callerToAgent: 0, agentToPhone: 0, callerToTarget: 0 },
};

/** One line in the session log. Every value from outside goes through forLog() first. */
function log(message) {
  Logger.write('[cartesia-control] ' + message);
}

/**
 * A value from outside (header, summary, error text), fit for the log: control, line-breaking
 * and bidi characters become '?', so a request cannot forge or disguise log lines; bounded.
 */
function forLog(value, max) {
  const text = String(value).replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028-\u202e\u2066-\u2069]/g, '?');
  return text.length > max ? text.slice(0, max) + '…' : text;
}

/** Runs a telephony call; a failure is logged, never thrown into an event handler. */
function safely(what, fn) {
  try {
    fn();
    return true;
  } catch (err) {
    log(what + ' failed: ' + forLog(err && err.message, 200));
    return false;
  }
}

/** The control URL's path is a bearer secret: log the origin and a short fingerprint only. */
function redactUrl(url) {
  const origin = String(url).replace(/^(https?:\/\/[^/]+).*$/, '$1');
  // Same fingerprint as the agent's (sha256 hex, 12 chars), so both logs can be matched.
  // ASSUMPTION: Crypto.sha256 returns the hex digest of the UTF-8 string.
  return origin + '/…#' + String(Crypto.sha256(String(url))).slice(0, 12);
}

function agentInControl(action) {
  if (session.phase === 'closing') return action === 'end_call';
  return session.phase === 'active' || session.phase === 'transferring';
}

function clearMaxCallTimer() {
  if (session.maxCallTimer !== null) clearTimeout(session.maxCallTimer);
  session.maxCallTimer = null;
}

function clearHangupTimer() {
  if (session.hangupTimer !== null) clearTimeout(session.hangupTimer);
  session.hangupTimer = null;
}

function hangUp(leg) {
  if (!leg || leg.ended) return;
  leg.ended = true; // first: our own hangup comes back as Disconnected/Failed, which must not act again
  safely('hangup ' + leg.name, () => leg.call.hangup());
}

/** Stops the agent's media and closes its WebSocket (once; our own close is not an error). */
function stopAgent() {
  const client = session.agent;
  if (!client || session.agentStopped) return;
  session.agentStopped = true;
  if (session.agentBridged) {
    safely('stop agent media', () => VoxEngine.stopMediaBetween(session.caller.call, client));
  }
  safely('close agent', () => client.close());
}

/**
 * Ends everything once: the transfer under way (the agent is told, best effort, while it is still
 * connected), the agent, the transfer leg, the caller, then (after the grace period) the session.
 * `transferReason` is the failure reason reported for a transfer still under way.
 */
function endSession(reason, transferReason, beforeHangup) {
  if (session.phase === 'ended') return;
  session.phase = 'ended';
  log('ending call: ' + reason);
  const keys = session.dtmf;
  if (keys.callerToAgent || keys.agentToPhone || keys.callerToTarget) {
    log('keypad: ' + keys.callerToAgent + ' caller keys to the agent, ' + keys.agentToPhone + ' agent digits played, ' + keys.callerToTarget + ' caller keys to the transfer target');
  }
  if (session.announcementTimer !== null) clearTimeout(session.announcementTimer);
  clearHangupTimer();
  clearMaxCallTimer();
  const transfer = session.transfer;
  if (transfer) {
    endTransfer(transfer);
    reportOutcome(transfer, 'failed', { reason: transferReason || 'error', detail: reason });
  }
  if (beforeHangup) beforeHangup(); // last words to the agent, while it is still connected
  stopAgent();
  hangUp(session.consult);
  hangUp(session.caller);
  setTimeout(() => VoxEngine.terminate(), TERMINATE_GRACE_MS); // once: endSession runs once
}

// --- transfer ---------------------------------------------------------------------------------

/**
 * Starts a transfer to `destinationName` (known: the control handler checked it) and dials its
 * first target; the caller stays with the agent while it rings. Runs inside the HTTP handler, after
 * the request was accepted: `id` is the accepted request's, the one every outcome carries.
 */
function startTransfer(id, summary, destinationName) {
  session.phase = 'transferring';
  const transfer = {
    id: id, summary: summary, chain: fallbackChain(session.destinations, destinationName), attempt: null,
    stage: 'dialling', ringTimer: null, amdTimer: null, extensionTimer: null, whisperTimer: null,
  };
  session.transfer = transfer;
  log('transfer ' + id + ' requested to ' + transfer.chain.join(' → ') + '; summary: ' + (summary ? forLog(summary, 2000) : '(none)'));
  dialNext(transfer);
}

/**
 * Dials the next destination of the chain: one attempt {number, destination, leg, amd,
 * ringingSent}. Every leg and detector handler is bound to its attempt and acts only while that
 * attempt is the transfer's current one (see isCurrent).
 */
function dialNext(transfer) {
  clearTransferTimers(transfer);
  const number = transfer.attempt ? transfer.attempt.number + 1 : 1;
  const destination = session.destinations[transfer.chain[number - 1]];
  const attempt = { number: number, destination: destination, leg: null, amd: null, ringingSent: false };
  transfer.attempt = attempt;
  transfer.stage = 'dialling';
  attempt.amd = createDetector(transfer, attempt);
  let call = null;
  const dialled = safely('dial transfer target', () => {
    call = dial(destination, attempt.amd);
  });
  if (!dialled || !call) {
    attemptFailed(transfer, attempt, { reason: 'error', detail: 'dial failed' });
    return;
  }
  const leg = { name: 'consult', call: call, ended: false };
  attempt.leg = leg;
  session.consult = leg;
  const listening = safely('listen to the transfer leg', () => {
    call.addEventListener(CallEvents.Ringing, () => onConsultRinging(transfer, attempt));
    call.addEventListener(CallEvents.Connected, () => onConsultConnected(transfer, attempt));
    call.addEventListener(CallEvents.Failed, (e) => onConsultFailed(transfer, attempt, e));
    call.addEventListener(CallEvents.Disconnected, () => onConsultDisconnected(transfer, attempt));
    call.addEventListener(CallEvents.PlaybackFinished, (e) => onWhisperFinished(transfer, attempt, e));
  });
  if (!listening) {
    attemptFailed(transfer, attempt, { reason: 'error', detail: 'cannot follow the transfer leg' });
    return;
  }
  const ringTimeoutMs = destination.ringTimeoutMs;
  transfer.ringTimer = setTimeout(() => onRingTimeout(transfer, attempt, ringTimeoutMs), ringTimeoutMs);
}

/**
 * A PSTN number with VoxEngine.callPSTN(number, callerid, {amd}), a SIP URI with
 * VoxEngine.callSIP(to, {callerid, amd}) (CallPSTNParameters / CallSIPParameters: "amd: Answering
 * machine or voicemail detector", voxengine.d.ts).
 */
function dial(destination, amd) {
  if (/^sips?:/.test(destination.to)) {
    const parameters = { callerid: destination.callerId };
    if (amd) parameters.amd = amd;
    return VoxEngine.callSIP(destination.to, parameters);
  }
  return amd ? VoxEngine.callPSTN(destination.to, destination.callerId, { amd: amd }) : VoxEngine.callPSTN(destination.to, destination.callerId);
}

/**
 * An answering-machine detector for one attempt, or null (AMD off or unavailable, or AMD.create
 * threw: the attempt then bridges without detection). AMD.create({model, timeout}) and
 * AMD.Events.DetectionComplete {resultClass, confidence?} (voxengine.d.ts; the Voximplant AMD
 * events reference); the detector goes to the dial as its `amd` parameter, as in Voximplant's
 * call-list example (AMD.create, then callPSTN(number, callerid, {amd})).
 * ASSUMPTION: attached this way, detection starts by itself when the leg connects (no detect()).
 */
function createDetector(transfer, attempt) {
  const options = session.transferOptions;
  if (!options.amd) return null;
  let amd = null;
  safely('create the answering-machine detector', () => {
    amd = AMD.create({ model: options.amdModel, timeout: options.amdTimeoutMs });
    amd.addEventListener(AMD.Events.DetectionComplete, (e) => onDetection(transfer, attempt, e));
    amd.addEventListener(AMD.Events.DetectionError, (e) => onDetectionError(transfer, attempt, e));
  });
  return amd;
}

function isCurrent(transfer, attempt, stage) {
  return session.transfer === transfer && session.phase === 'transferring' && transfer.attempt === attempt && transfer.stage === stage;
}

/** Answered, not yet bridged: the stages in which the target's leg is up and hears only us. */
const ANSWERED_STAGES = ['detecting', 'extension', 'whispering'];

function isAnswered(transfer, attempt) {
  return ANSWERED_STAGES.some((stage) => isCurrent(transfer, attempt, stage));
}

function clearTransferTimers(transfer) {
  for (const timer of ['ringTimer', 'amdTimer', 'extensionTimer', 'whisperTimer']) {
    if (transfer[timer] !== null) clearTimeout(transfer[timer]);
    transfer[timer] = null;
  }
}

/** Clears the transfer's timers and detaches it from the session; its legs' events then do nothing. */
function endTransfer(transfer) {
  transfer.stage = 'over';
  clearTransferTimers(transfer);
  if (session.transfer === transfer) session.transfer = null;
}

function onConsultRinging(transfer, attempt) {
  if (!isCurrent(transfer, attempt, 'dialling') || attempt.ringingSent) return; // once per attempt
  attempt.ringingSent = true;
  reportOutcome(transfer, 'ringing', {});
}

function onRingTimeout(transfer, attempt, ringTimeoutMs) {
  transfer.ringTimer = null;
  if (!isCurrent(transfer, attempt, 'dialling')) return;
  attemptFailed(transfer, attempt, { reason: 'no_answer', detail: 'no answer within ' + ringTimeoutMs / 1000 + ' s' });
}

/**
 * The target answered. With a detector, wait for its verdict (at most TRANSFER_AMD_TIMEOUT_S, then
 * it counts as a human); without one, go on as for a human.
 */
function onConsultConnected(transfer, attempt) {
  if (!isCurrent(transfer, attempt, 'dialling')) return;
  clearTimeout(transfer.ringTimer);
  transfer.ringTimer = null;
  if (!attempt.amd) {
    humanAnswered(transfer, attempt, null);
    return;
  }
  transfer.stage = 'detecting';
  const timeoutMs = session.transferOptions.amdTimeoutMs;
  log('transfer ' + transfer.id + ' answered at ' + attempt.destination.name + '; detecting an answering machine (at most ' + timeoutMs / 1000 + ' s)');
  transfer.amdTimer = setTimeout(() => {
    transfer.amdTimer = null;
    if (!isCurrent(transfer, attempt, 'detecting')) return;
    log('transfer ' + transfer.id + ': no AMD verdict within ' + timeoutMs / 1000 + ' s; counted as a human');
    humanAnswered(transfer, attempt, 'timeout');
  }, timeoutMs);
}

/**
 * AMD.Events.DetectionComplete: resultClass VOICEMAIL → this attempt failed `voicemail`; HUMAN →
 * a human; TIMEOUT (the platform's own timeout) → counted as a human, reported `timeout`;
 * CALL_ENDED → nothing here (the leg's own Disconnected decides).
 */
function onDetection(transfer, attempt, e) {
  if (!isCurrent(transfer, attempt, 'detecting')) return;
  const result = String(e && e.resultClass).toUpperCase();
  if (result === 'VOICEMAIL') {
    attemptFailed(transfer, attempt, { reason: 'voicemail', detail: 'answering machine detected' });
  } else if (result === 'HUMAN') {
    humanAnswered(transfer, attempt, 'human');
  } else if (result === 'TIMEOUT') {
    humanAnswered(transfer, attempt, 'timeout');
  }
}

/** AMD.Events.DetectionError: no verdict will come; counted as a human, as a timeout is. */
function onDetectionError(transfer, attempt, e) {
  if (!isCurrent(transfer, attempt, 'detecting')) return;
  log('transfer ' + transfer.id + ': AMD error (' + forLog(e && e.message, 100) + '); counted as a human');
  humanAnswered(transfer, attempt, 'timeout');
}

/**
 * A human is on the target's leg (or AMD is off or gave no verdict: `amd` 'timeout' or null).
 * Only now: the destination's extension digits, then the whisper, then the bridge.
 */
function humanAnswered(transfer, attempt, amd) {
  clearTransferTimers(transfer);
  transfer.amd = amd;
  const extension = attempt.destination.extension;
  if (!extension) {
    startWhisper(transfer, attempt);
    return;
  }
  transfer.stage = 'extension';
  const sent = safely('send the extension', () => attempt.leg.call.sendDigits(extension.replace(/w/g, 'p')));
  if (!sent) {
    startWhisper(transfer, attempt);
    return;
  }
  log('transfer ' + transfer.id + ': extension sent to ' + attempt.destination.name + ' (' + extension.length + ' symbols)');
  transfer.extensionTimer = setTimeout(() => {
    transfer.extensionTimer = null;
    if (isCurrent(transfer, attempt, 'extension')) startWhisper(transfer, attempt);
  }, extension.length * EXTENSION_MS_PER_SYMBOL);
}

/** Whisper the summary to the target only, then bridge (completeTransfer). */
function startWhisper(transfer, attempt) {
  const options = session.transferOptions;
  const text = options.whisper ? whisperText(transfer.summary) : '';
  if (!text) {
    log('transfer ' + transfer.id + ' answered; ' + (options.whisper ? 'no summary to whisper' : 'whisper off'));
    completeTransfer(transfer, attempt);
    return;
  }
  transfer.stage = 'whispering';
  // Call.say plays into that call only: the caller, still bridged to the agent, never hears it.
  const call = attempt.leg.call;
  const said = safely('whisper to the transfer target', () => {
    if (options.whisperVoice) call.say(text, { voice: options.whisperVoice });
    else call.say(text);
  });
  if (!said) {
    completeTransfer(transfer, attempt); // the target answered; a missing whisper is no reason to fail
    return;
  }
  log('transfer ' + transfer.id + ' answered; whispering the summary to the target (' + text.length + ' characters)');
  const whisperTimeoutMs = options.whisperTimeoutMs;
  transfer.whisperTimer = setTimeout(() => onWhisperTimeout(transfer, attempt, whisperTimeoutMs), whisperTimeoutMs);
}

function onWhisperFinished(transfer, attempt, e) {
  if (!isCurrent(transfer, attempt, 'whispering')) return;
  if (e && e.error) log('whisper playback ended with an error: ' + forLog(e.error, 200));
  completeTransfer(transfer, attempt);
}

function onWhisperTimeout(transfer, attempt, whisperTimeoutMs) {
  transfer.whisperTimer = null;
  if (!isCurrent(transfer, attempt, 'whispering')) return;
  log('transfer ' + transfer.id + ': the whisper did not finish within ' + whisperTimeoutMs / 1000 + ' s; bridging');
  completeTransfer(transfer, attempt);
}

/**
 * The hand-off: the agent is told `connected` while it is still attached, then detached, then the
 * caller is bridged to the target. The bridge also replaces whatever the target's leg was still
 * playing (a call "can receive only one audio stream. A new incoming stream always replaces the
 * previous one", Call.say), so a whisper cut by its timeout stops there. The call-length backstop
 * guards the agent's share of the call only: from here a person has the caller.
 */
function completeTransfer(transfer, attempt) {
  endTransfer(transfer);
  // The effect that ends the caller's hearing of the agent is this detach-and-bridge, now.
  reportOutcome(transfer, 'connected', { amd: transfer.amd, playoutOffsetMs: playoutOffsetMs(session.media, Date.now()) });
  stopAgent();
  safely('bridge caller and transfer target', () => VoxEngine.sendMediaBetween(session.caller.call, attempt.leg.call));
  session.phase = 'transferred';
  clearMaxCallTimer();
  log('transfer ' + transfer.id + ': the caller is with ' + attempt.destination.name + '; the agent is off the call');
}

function onConsultFailed(transfer, attempt, e) {
  if (attempt.leg) attempt.leg.ended = true;
  const code = sipCodeOf(e && e.code);
  const detail = e && e.reason ? String(e.reason) : null;
  if (isCurrent(transfer, attempt, 'dialling')) attemptFailed(transfer, attempt, { reason: failureReasonForCode(code), sipCode: code, detail: detail });
  else if (isAnswered(transfer, attempt)) transferFailed(transfer, attempt, { reason: 'target_hung_up', sipCode: code, detail: detail });
  // Otherwise: our own hangup of a leg we gave up on (ring timeout, voicemail, end_call, caller
  // gone), or a late event of an earlier attempt or transfer: nothing to do.
}

function onConsultDisconnected(transfer, attempt) {
  const leg = attempt.leg;
  if (leg) leg.ended = true;
  if (isCurrent(transfer, attempt, 'dialling')) attemptFailed(transfer, attempt, { reason: 'error', detail: 'the leg disconnected before it answered' });
  else if (isAnswered(transfer, attempt)) transferFailed(transfer, attempt, { reason: 'target_hung_up' });
  else if (session.phase === 'transferred' && session.consult === leg) endSession('transfer target hung up');
}

/**
 * One attempt failed before a human was reached (busy, no answer, voicemail, rejected, error):
 * hang its leg up; with a fallback left, report `attempt_failed` and dial it, else the transfer
 * failed with this attempt's reason.
 */
function attemptFailed(transfer, attempt, failure) {
  if (attempt.number >= transfer.chain.length) {
    transferFailed(transfer, attempt, failure);
    return;
  }
  clearTransferTimers(transfer);
  hangUpAttempt(attempt);
  reportOutcome(transfer, 'attempt_failed', failure);
  dialNext(transfer);
}

function hangUpAttempt(attempt) {
  hangUp(attempt.leg);
  if (attempt.leg && session.consult === attempt.leg) session.consult = null;
}

/**
 * The transfer is over without a bridge: hang up its leg (if still up), give the caller back to
 * the agent and tell it; when the agent cannot be told (gone), tell the caller and hang up.
 * `failure`: {reason, sipCode?, detail?}.
 */
function transferFailed(transfer, attempt, failure) {
  endTransfer(transfer);
  hangUpAttempt(attempt);
  if (reportOutcome(transfer, 'failed', failure)) {
    session.phase = 'active'; // the caller never left the agent; it has the call again
    return;
  }
  announceTransferFailure(failure.reason);
}

/** One milestone of a transfer's current attempt (`extra` as for outcomeMetadata, plus `detail` for the log). */
function reportOutcome(transfer, status, extra) {
  const attempt = transfer.attempt;
  const metadata = outcomeMetadata(transfer.id, 'call_transfer', status,
    Object.assign({ destination: attempt.destination.name, attempt: attempt.number }, extra));
  return sendOutcome(metadata, 'transfer', extra.detail);
}

/**
 * Sends one outcome to the agent (when it is still connected) and logs it once. Returns whether
 * the agent was told. The agent's WebSocket and its closing are asynchronous: custom() throwing is
 * taken as "the agent is gone" and falls back like a close would.
 */
function sendOutcome(metadata, what, detail) {
  let told = false;
  if (agentConnected()) {
    // ASSUMPTION: AgentsClient.custom(parameters) "Sends custom metadata to the agent" (Voximplant's
    // Cartesia reference, typed as a plain Object); {metadata} is the shape start() takes, and it
    // becomes Cartesia's {"event": "custom", "metadata": {...}}, which Line delivers as UserCustomSent.
    told = safely('send the outcome to the agent', () => session.agent.custom({ metadata: metadata }));
    if (!told) session.agentGone = true;
  }
  let line = what + ' ' + metadata.id + ' ' + metadata.status;
  if (metadata.destination !== undefined) line += ' destination=' + metadata.destination + ' attempt=' + metadata.attempt;
  if (metadata.reason) line += ' reason=' + metadata.reason;
  if (metadata.amd) line += ' amd=' + metadata.amd;
  if (metadata.sip_code !== undefined) line += ' sip_code=' + metadata.sip_code;
  if (metadata.playout_offset_ms !== undefined) line += ' playout_offset_ms=' + metadata.playout_offset_ms;
  if (detail) line += ' (' + forLog(detail, 100) + ')';
  log(line + (told ? '; agent told' : '; agent not told (gone)'));
  return told;
}

function agentConnected() {
  return Boolean(session.agent) && !session.agentStopped && !session.agentGone;
}

/** The agent is gone: tells the caller the transfer did not work, then hangs up (on PlaybackFinished or a timeout). */
function announceTransferFailure(reason) {
  session.phase = 'announcing';
  stopAgent(); // the caller's single audio input is about to carry the message
  const message = reason === 'busy' ? TRANSFER_BUSY_MESSAGE : TRANSFER_FAILED_MESSAGE;
  if (!safely('say transfer failure', () => session.caller.call.say(message))) {
    endSession('transfer failed');
    return;
  }
  session.announcementTimer = setTimeout(() => endSession('transfer failed (announcement timed out)'), ANNOUNCEMENT_TIMEOUT_MS);
}

/**
 * The whisper voice: TRANSFER_WHISPER_VOICE names a VoiceList entry, "Amazon.en_US_Joanna" or
 * "VoiceList.Amazon.Neural.en_US_Joanna" (CallSayParameters.voice is a Voice, "List of all
 * supported voices: [VoiceList]"). null (the platform's default voice) when unset or unknown.
 * ASSUMPTION: VoiceList's namespaces are plain objects whose properties are the Voice values.
 */
function resolveVoice(name) {
  if (!name) return null;
  const path = name.replace(/^VoiceList\./, '').split('.');
  let value = typeof VoiceList === 'undefined' ? undefined : VoiceList;
  for (const part of path) {
    if (!/^[A-Za-z0-9_]+$/.test(part) || value === null || typeof value !== 'object' || !hasOwn(value, part)) {
      value = undefined;
      break;
    }
    value = value[part];
  }
  if (value === undefined || value === null) {
    log(STORAGE_KEYS.whisperVoice + ' "' + forLog(name, 80) + '" is not a VoiceList voice; using the default voice');
    return null;
  }
  return value;
}

/**
 * The AMD.Model named by TRANSFER_AMD_MODEL (an AMD.Model key: US, EU_GENERAL, ...; voxengine.d.ts
 * "AMD.Model ... Answering machine or voicemail detector model", country models), or null when the
 * AMD namespace is not there (logged: transfers then bridge without detection). An unknown name is
 * logged and the default model used.
 */
function resolveAmdModel(name) {
  if (typeof AMD === 'undefined' || !AMD || typeof AMD.create !== 'function' || !AMD.Model || !AMD.Events) {
    log('answering-machine detection is not available (no AMD module); transfers bridge without it');
    return null;
  }
  const key = name.toUpperCase();
  if (/^[A-Z_]{1,32}$/.test(key) && hasOwn(AMD.Model, key)) return AMD.Model[key];
  log(STORAGE_KEYS.amdModel + ' "' + forLog(name, 40) + '" is not an AMD.Model; using ' + TRANSFER_DEFAULTS.amdModel);
  return AMD.Model[TRANSFER_DEFAULTS.amdModel];
}

/**
 * MAX_CALL_S, the backstop behind the agent's own polite close (VOX_MAX_CALL_S): at the limit,
 * counted from the answer, the scenario hangs up whatever the agent does. It guards the agent's
 * share of the call; the hand-off to a transfer target stops it (completeTransfer).
 */
function startMaxCallTimer(limitMs) {
  if (limitMs === null) return;
  log('call length: at most ' + limitMs / 1000 + ' s (' + STORAGE_KEYS.maxCall + ')');
  const leftMs = Math.max(0, limitMs - (Date.now() - session.answeredAtMs));
  session.maxCallTimer = setTimeout(() => {
    session.maxCallTimer = null;
    endSession('maximum call length reached (' + STORAGE_KEYS.maxCall + ' ' + limitMs / 1000 + ' s)', 'cancelled');
  }, leftMs);
}

// --- the agent --------------------------------------------------------------------------------

/**
 * The agent's WebSocket failed or closed without us closing it; `code` is the close code (null
 * for Cartesia.AgentsEvents.WebSocketError). Outcomes are no longer sent after it.
 * - A normal close (1000, Cartesia's "call ended by agent") while active keeps the caller for the
 *   end_call POST that hangs up, at most AGENT_CLOSE_GRACE_MS; while an accepted end_call waits
 *   for playout, that hang-up goes on as planned.
 * - Any other close ends the call at once (an end_call waiting for playout hangs up now).
 * - While transferring, either close lets the transfer carry on and its own outcome decides the
 *   call: a bridge as usual, or, since nobody can take the caller back, the apology and a hang-up.
 */
function onAgentLost(what, code) {
  if (session.agentStopped || session.agentGone) return; // we closed it ourselves, or already known
  session.agentGone = true;
  log('agent ' + what);
  const normal = code === NORMAL_CLOSE_CODE;
  if (session.phase === 'hanging_up') {
    if (normal) log('the hang-up for end_call ' + session.endCallId + ' goes on as planned');
    else hangUpForEndCall('the agent is gone');
  } else if (session.phase === 'active' && normal) {
    session.phase = 'closing';
    log('keeping the caller up to ' + AGENT_CLOSE_GRACE_MS / 1000 + ' s for the end_call request');
    session.hangupTimer = setTimeout(() => endSession('agent closed the call; no hang-up request'), AGENT_CLOSE_GRACE_MS);
  } else if (session.phase === 'active' || session.phase === 'starting') {
    endSession('agent disconnected');
  } else if (session.phase === 'transferring') {
    log('the transfer carries on without the agent');
  }
}

// --- end_call and the agent's audio -------------------------------------------------------------

/**
 * An accepted end_call (inside the HTTP handler, which answers at once). With the playout guard on
 * and the agent's audio playing at VoxEngine, the hang-up waits for WebSocketMediaEnded or the
 * guard's bound, whichever comes first; otherwise it happens now.
 */
function acceptEndCall(id) {
  clearHangupTimer(); // the close grace, if the agent's socket is already gone
  session.phase = 'hanging_up';
  session.endCallId = id;
  const options = session.hangupOptions;
  if (!options.playoutGuard || !session.media.playing) {
    hangUpForEndCall('end_call requested by the agent');
    return;
  }
  log('end_call ' + id + ': the agent\'s audio is playing; hanging up when it ends, at most ' + options.playoutGuardMaxMs / 1000 + ' s');
  session.hangupTimer = setTimeout(() => {
    session.hangupTimer = null;
    hangUpForEndCall('end_call requested by the agent (playout guard bound reached)');
  }, options.playoutGuardMaxMs);
}

/**
 * Hangs the caller up for the accepted end_call. Just before, while the agent is connected, it is
 * told `completed` with the playout offset of this hang-up (the effect time is now: endSession
 * hangs the caller up in the same handler).
 */
function hangUpForEndCall(reason) {
  if (session.phase !== 'hanging_up') return;
  const id = session.endCallId;
  endSession(reason, 'cancelled', () => {
    const offset = playoutOffsetMs(session.media, Date.now());
    sendOutcome(outcomeMetadata(id, 'end_call', 'completed', { playoutOffsetMs: offset }), 'end_call', null);
  });
}

/**
 * Cartesia.Events.WebSocketMediaStarted: "Triggered when the audio stream sent by a third party
 * through a Cartesia WebSocket starts playing" (Voximplant's Cartesia Events reference). The
 * events are delivered to AgentsClient.addEventListener ("Adds a handler for the specified
 * Cartesia.AgentsEvents or Cartesia.Events event", AgentsClient reference).
 * ASSUMPTION: one agent stream per client (the events' optional `tag` is not used).
 */
function onMediaStarted() {
  session.media.playing = true;
}

/**
 * Cartesia.Events.WebSocketMediaEnded: "Triggered after the end of the audio stream ... (1 second
 * of silence)": the audio stopped MEDIA_ENDED_SILENCE_MS before now. A guarded hang-up goes now.
 */
function onMediaEnded() {
  session.media.playing = false;
  session.media.lastEndedAtMs = Date.now();
  if (session.phase === 'hanging_up' && session.hangupTimer !== null) {
    clearHangupTimer();
    hangUpForEndCall('end_call requested by the agent (its audio ended)');
  }
}

// --- the keypad ----------------------------------------------------------------------------------

/**
 * CallEvents.ToneReceived on the caller's leg ({tone: "0-9,*,#"}, once Call.handleTones(true) is
 * on, which also "removes [each DTMF signal] from audio stream", voxengine.d.ts). While the agent
 * is connected the key goes to it as Cartesia's dtmf event ({"event": "dtmf", "dtmf": "1"},
 * cartesia-ai/docs web-calls.mdx, one digit per event), which Line delivers as UserDtmfSent(button)
 * (line/_harness_types.py DTMFInput). After the hand-off the key goes to the transfer target with
 * sendDigits, since the bridge no longer carries it.
 * ASSUMPTION: AgentsClient.dtmf(parameters) ("Sends DTMF (dual-tone multi-frequency) tones",
 * Voximplant's AgentsClient reference, typed only as Object) takes that event's field, {dtmf},
 * as custom() takes {metadata}.
 */
function onCallerTone(e) {
  const tone = e && typeof e.tone === 'string' ? e.tone : '';
  if (!/^[0-9*#]$/.test(tone)) return;
  if (session.phase === 'transferred') {
    const target = session.consult;
    if (target && !target.ended && safely('pass a key to the transfer target', () => target.call.sendDigits(tone))) session.dtmf.callerToTarget++;
    return;
  }
  if (!agentConnected() || !session.agentBridged) return;
  if (safely('send a key to the agent', () => session.agent.dtmf({ dtmf: tone }))) session.dtmf.callerToAgent++;
}

/**
 * The digits of a Cartesia.AgentsEvents.DTMF, or null. ASSUMPTION: the event carries Cartesia's
 * message ({"event": "dtmf", "dtmf": "5"}, web-calls.mdx) on the event or in its `data`;
 * Voximplant's AgentsEvents reference lists DTMF without its parameters.
 */
function dtmfDigitsOf(e) {
  const sources = [e, e && e.data];
  for (const source of sources) {
    if (source && typeof source === 'object' && typeof source.dtmf === 'string') return DTMF_DIGITS.test(source.dtmf) ? source.dtmf : null;
  }
  return null;
}

/**
 * The agent's keys (Line's send_dtmf → AgentSendDtmf → the harness → Cartesia.AgentsEvents.DTMF),
 * played with Call.sendDigits ("Sends DTMF digits to the remote peer", voxengine.d.ts) on the leg
 * the agent is dealing with: the transfer target's while it is answered and not yet bridged (an
 * extension, an IVR), else the caller's. Counted, never logged.
 */
function onAgentDtmf(e) {
  const digits = dtmfDigitsOf(e);
  if (!digits) {
    log('agent DTMF ignored: not 1-32 of 0-9 * #');
    return;
  }
  const transfer = session.transfer;
  let leg = null;
  if (transfer && transfer.attempt && isAnswered(transfer, transfer.attempt)) leg = transfer.attempt.leg;
  else if (['active', 'transferring', 'closing', 'hanging_up'].indexOf(session.phase) >= 0) leg = session.caller;
  if (!leg || leg.ended) return;
  if (safely('play the agent\'s digits', () => leg.call.sendDigits(digits))) {
    session.dtmf.agentToPhone += digits.length;
    log('agent DTMF: ' + digits.length + ' digit(s) played to the ' + (leg === session.caller ? 'caller' : 'transfer target'));
  }
}

// --- control requests ---------------------------------------------------------------------------

const handleControlRequest = createControlHandler({
  secret: () => (session.settings ? session.settings.controlSecret : undefined),
  nowSeconds: () => Math.floor(Date.now() / 1000),
  hmacSha256Hex(key, data) {
    try {
      return Crypto.hmac_sha256(key, data);
    } catch (err) {
      return ''; // fail closed: an unusable primitive matches no signature
    }
  },
  knownDestination: (name) => Boolean(session.destinations[name]),
  agentInControl: agentInControl,
  transferUnderWay: () => session.phase === 'transferring',
  perform(command) {
    if (command.action === 'end_call') acceptEndCall(command.id);
    else if (command.action === 'call_transfer') startTransfer(command.id, command.summary, command.destination);
  },
});

/** AppEvents.HttpRequest: whatever is returned becomes the response body. Never throws. */
function onHttpRequest(e) {
  let outcome;
  let headers = Object.create(null);
  try {
    headers = normalizeHeaders(e && e.headers);
    outcome = handleControlRequest({ method: e && e.method, body: e && e.content, headers: headers });
  } catch (err) {
    // Not reachable by design; outside the contract's codes (see voxengine/README.md).
    log('control handler error: ' + forLog(err && err.message, 200));
    outcome = { response: refusal('internal_error'), id: null, action: null };
  }
  logControlRequest(outcome, headers);
  return JSON.stringify(outcome.response);
}

function logControlRequest(outcome, headers) {
  const response = outcome.response;
  let line = 'control action=' + (outcome.action || '-') + ' id=' + (outcome.id || '-') +
    ' result=' + (response.ok ? 'ok' : response.error) + (response.duplicate ? ' duplicate' : '');
  if (headers['x-traceparent']) line += ' traceparent=' + forLog(headers['x-traceparent'], 128);
  if (headers['x-tracestate']) line += ' tracestate=' + forLog(headers['x-tracestate'], 512);
  log(line);
}

// --- session setup ------------------------------------------------------------------------------

/** Reads every setting; blank values count as missing. */
async function loadSettings() {
  const names = Object.keys(STORAGE_KEYS);
  const items = await Promise.all(names.map((name) => ApplicationStorage.get(STORAGE_KEYS[name])));
  const settings = {};
  names.forEach((name, i) => {
    const value = items[i] && typeof items[i].value === 'string' ? items[i].value.trim() : '';
    settings[name] = value || null;
  });
  return settings;
}

function checkHmacPrimitive() {
  let hex = '';
  safely('HMAC self-test', () => {
    hex = String(Crypto.hmac_sha256(HMAC_SELF_TEST.key, HMAC_SELF_TEST.data)).toLowerCase();
  });
  if (hex !== HMAC_SELF_TEST.hex) {
    log('ERROR: Crypto.hmac_sha256 does not return hex HMAC-SHA256; every signed request will be refused');
  }
}

function onStarted(e) {
  session.controlUrl = e.accessSecureURL;
  log('session started; control URL ' + redactUrl(session.controlUrl));
}

async function onCallAlerting(e) {
  if (session.phase !== 'idle') return; // one inbound call per session
  session.phase = 'starting';
  const caller = { name: 'caller', call: e.call, ended: false };
  session.caller = caller;
  e.call.addEventListener(CallEvents.Disconnected, () => {
    caller.ended = true;
    endSession('caller hung up', 'caller_hung_up');
  });
  e.call.addEventListener(CallEvents.Failed, () => {
    caller.ended = true;
    endSession('caller leg failed', 'caller_hung_up');
  });
  e.call.addEventListener(CallEvents.PlaybackFinished, () => {
    if (session.phase === 'announcing') endSession('transfer failed (caller told)');
  });
  e.call.addEventListener(CallEvents.ToneReceived, onCallerTone);
  try {
    e.call.answer();
    session.answeredAtMs = Date.now();
    e.call.handleTones(true);
    if (RECORD_CALLS) e.call.record({ hd_audio: true, stereo: true });
    await connectAgent(e);
  } catch (err) {
    log('call setup failed: ' + forLog(err && err.message, 200));
    endSession('setup failed');
  }
}

async function connectAgent(e) {
  const settings = await loadSettings();
  if (session.phase !== 'starting') return; // the caller hung up meanwhile
  const missing = REQUIRED_SETTINGS.filter((name) => !settings[name]).map((name) => STORAGE_KEYS[name]);
  if (!TRANSFER_TARGET_SETTINGS.some((name) => settings[name])) missing.push(STORAGE_KEYS.transferNumber + ' (or ' + STORAGE_KEYS.destinations + ')');
  if (missing.length) {
    log('missing ApplicationStorage keys: ' + missing.join(', '));
    endSession('not configured');
    return;
  }
  session.settings = settings;
  const options = readTransferOptions(settings);
  options.problems.forEach(log);
  options.whisperVoice = resolveVoice(options.whisperVoiceName);
  options.amdModel = options.amd ? resolveAmdModel(options.amdModelName) : null;
  options.amd = options.amdModel !== null;
  session.transferOptions = options;
  const destinations = parseDestinations(settings.destinations, settings.transferNumber,
    { ringTimeoutMs: options.ringTimeoutMs, callerId: settings.pstnCallerId });
  if (destinations.problems.length) log(STORAGE_KEYS.destinations + ': ' + destinations.problems.join('; '));
  session.destinations = destinations.table;
  log('transfer destinations: ' + (Object.keys(destinations.table).map((name) => {
    const fallback = destinations.table[name].fallback;
    return fallback.length ? name + ' (then ' + fallback.join(', ') + ')' : name;
  }).join(', ') || 'none'));
  const maxCall = readMaxCallMs(settings);
  maxCall.problems.forEach(log);
  startMaxCallTimer(maxCall.value);
  const hangup = readHangupOptions(settings);
  hangup.problems.forEach(log);
  session.hangupOptions = hangup;
  log('hang-up: playout guard ' + (hangup.playoutGuard ? 'on (at most ' + hangup.playoutGuardMaxMs / 1000 + ' s)' : 'off'));
  log('transfer: ring timeout ' + options.ringTimeoutMs / 1000 + ' s, whisper ' +
    (options.whisper ? 'on (timeout ' + options.whisperTimeoutMs / 1000 + ' s, voice ' + (options.whisperVoice ? forLog(options.whisperVoiceName, 80) : 'default') + ')' : 'off') +
    ', answering-machine detection ' + (options.amd ? 'on (timeout ' + options.amdTimeoutMs / 1000 + ' s)' : 'off'));
  if (settings.controlSecret) checkHmacPrimitive();
  log('control requests ' + (settings.controlSecret ? 'must be signed' : 'are not signed (no VOX_CONTROL_SECRET)'));

  const client = await Cartesia.createAgentsClient({
    apiKey: settings.apiKey,
    agentId: settings.agentId,
    cartesiaVersion: CARTESIA_VERSION,
    onWebSocketClose: (event) => onAgentLost('WebSocket closed (' + forLog(event && event.code, 10) + ')', event ? event.code : null),
  });
  session.agent = client;
  if (session.phase !== 'starting') {
    stopAgent(); // the caller hung up while the agent was connecting
    return;
  }
  // The agent asks to drop the audio it has queued when the caller barges in.
  client.addEventListener(Cartesia.AgentsEvents.Clear, () => safely('clear agent audio', () => client.clearMediaBuffer()));
  client.addEventListener(Cartesia.AgentsEvents.WebSocketError, () => onAgentLost('WebSocket error', null));
  client.addEventListener(Cartesia.AgentsEvents.DTMF, onAgentDtmf);
  client.addEventListener(Cartesia.Events.WebSocketMediaStarted, onMediaStarted);
  client.addEventListener(Cartesia.Events.WebSocketMediaEnded, onMediaEnded);
  VoxEngine.sendMediaBetween(e.call, client);
  session.agentBridged = true;
  client.start({
    metadata: {
      vox_session_control_url: session.controlUrl,
      // As Cartesia's Calls API reads the start event (cartesia-ai/docs web-calls.mdx: `from`,
      // `to`) and as Voximplant's published Cartesia scenario sends them.
      from: e.callerid,
      to: e.destination,
    },
  });
  session.phase = 'active';
  log('agent started');
}

VoxEngine.addEventListener(AppEvents.Started, onStarted);
VoxEngine.addEventListener(AppEvents.CallAlerting, onCallAlerting);
VoxEngine.addEventListener(AppEvents.HttpRequest, onHttpRequest);
