'use strict';
/**
 * A fake VoxEngine runtime for scenario.js: it loads the scenario into a node:vm context whose
 * globals imitate the VoxEngine APIs the scenario uses, records every telephony effect, and lets
 * a test drive the session event by event.
 *
 * Fidelity notes (from Voximplant's voxengine.d.ts, VoxEngine 7.57):
 * - event names are the documented string values; listening to anything else throws, so a typo
 *   in the scenario (CallEvents.Disconected) fails a test instead of silently never firing;
 * - AppEvents.HttpRequest carries only X- headers, as an array of {key, value};
 * - Call.hangup() is answered by CallEvents.Disconnected (connected leg) or CallEvents.Failed
 *   (outgoing leg not yet connected), as the docs describe; it is queued, not synchronous;
 * - closing a Cartesia client reports through its onWebSocketClose callback;
 * - timers are fake: nothing runs until the test advances the clock.
 *
 * Transfer outcomes (each line names its source; "ASSUMPTION" where the docs are silent):
 * - CallEvents.Ringing fires only on an outgoing leg that has not connected or ended: "Triggers
 *   after outgoing call receives progress signal from a remote peer" (CallEvents.Ringing); tests
 *   fire it with ring(), as often as they like (the network may repeat 180/183).
 * - Call.say(text, {voice}) plays into that call only and is followed by CallEvents.PlaybackFinished
 *   (CallEvents.PlaybackFinished: "the audio/voice playback is completed ... started by the
 *   [Call.say] or [Call.startPlayback] methods"); tests end it with playbackFinished(). Saying to a
 *   call that is not connected is a violation ("Say some text to the [CallEvents.Connected] call",
 *   Call.say); text over 1500 characters ends at once with PlaybackFinished {error} (Call.say).
 * - Who hears what: a call "can receive only one audio stream. A new incoming stream always
 *   replaces the previous one" (Call.say). Every change of a unit's incoming audio (say,
 *   sendMediaBetween, stopMediaBetween) is recorded in `audio` as {at, leg, source}; a playback
 *   replaced by a bridge ends without PlaybackFinished (ASSUMPTION: as for stopPlayback, whose
 *   doc says PlaybackFinished "is not triggered"). After PlaybackFinished the call hears nothing
 *   (ASSUMPTION: a stream replaced by say() does not come back by itself).
 * - AgentsClient.custom(parameters): "Sends custom metadata to the agent" (Voximplant's Cartesia
 *   AgentsClient reference); recorded in `customSent` as sent on the wire (a JSON copy). Sending
 *   before start() or after the WebSocket closed is a violation: the scenario promises not to
 *   (ASSUMPTION: the platform itself would drop it silently rather than throw).
 * - VoxEngine.callPSTN(number, callerid, parameters?) returns the Call at once (typings,
 *   VoxEngine.callPSTN); throwOn / throwNext make it throw, as a bad number or account state
 *   might (ASSUMPTION: the docs do not say when it throws, only that it "can trigger the
 *   [CallEvents.Failed] event").
 * - Events of a leg that has ended are not delivered: the far-end drivers (ring, remoteAnswer,
 *   remoteFail, remoteHangup, playbackFinished) return false and do nothing then.
 * - VoiceList: a few entries of the typings' VoiceList namespaces; a Voice is an opaque object
 *   (`declare class Voice {}`), here {voice: '<path>'}.
 *
 * The agent's audio and its socket (issue #17; "ASSUMPTION" where the docs are silent):
 * - Cartesia.Events.WebSocketMediaStarted "Triggered when the audio stream sent by a third party
 *   through a Cartesia WebSocket starts playing" and WebSocketMediaEnded "after the end of the audio
 *   stream ... (1 second of silence)" (Voximplant's Cartesia Events reference), delivered to
 *   AgentsClient.addEventListener ("Adds a handler for the specified Cartesia.AgentsEvents or
 *   Cartesia.Events event"). Tests drive the audio with audioStarts() / audioStops(): Started fires
 *   when audio starts after an Ended (or first), Ended fires 1000 ms (fake time) after the audio
 *   stops. ASSUMPTION: audio resuming within that second is the same stream (no new Started, no Ended).
 * - ASSUMPTION: buffered audio keeps playing, and its events keep coming, after Cartesia closes the
 *   socket; after the scenario's own close() nothing more is delivered.
 * - Cartesia closes with code 1000, reason "call ended by agent", when the agent ends the call
 *   (Cartesia's Calls API, web-calls.mdx): remoteClose(1000, 'call ended by agent'); any other code
 *   is an abnormal close (default 1006).
 *
 * Answering-machine detection, the keypad and destinations (issue #18; "ASSUMPTION" where the
 * docs are silent):
 * - AMD.create({model, timeout}) returns an AnsweringMachineDetector; `model` must be an AMD.Model
 *   value, `timeout` "Must not be less than 0 or greater than 20000" (voxengine.d.ts, voxengine-ci
 *   28.0.0). Given to callPSTN / callSIP as `amd` (CallPSTNParameters / CallSIPParameters), it is
 *   attached to that leg. Its AMD.Events.DetectionComplete carries {amd, call, callId,
 *   resultClass, confidence} (resultClass: VOICEMAIL, HUMAN, TIMEOUT, CALL_ENDED; Voximplant's AMD
 *   events reference). ASSUMPTION: attached this way, detection runs after Connected by itself.
 *   Tests drive the verdict: remoteAnswer() is a person answering, and an attached detector says
 *   HUMAN right after Connected (remoteAnswer({amd: 'VOICEMAIL'}) a machine, {amd: null} no verdict
 *   until detection(resultClass) or never). options.noAmd: the AMD namespace is missing.
 * - Call.handleTones(true): each DTMF signal "triggers the CallEvents.ToneReceived" {tone, type}
 *   (voxengine.d.ts); tests press keys with tone('5'), delivered only while tones are handled.
 * - Call.sendDigits(digits): "Any combination of 0-9, *, #, p (pause) symbols" (voxengine.d.ts);
 *   anything else, or a leg not connected, is a violation. Recorded as effect `sendDigits`.
 * - AgentsClient.dtmf(parameters): "Sends DTMF (dual-tone multi-frequency) tones" (AgentsClient
 *   reference); recorded in `dtmfSent` as sent. Cartesia.AgentsEvents.DTMF from the agent:
 *   agentDtmf(digits) fires it with Cartesia's message as `data` ({"event": "dtmf", "dtmf": ...},
 *   web-calls.mdx; ASSUMPTION: Voximplant's reference lists the event without its parameters).
 * - options.behaviours {target (number or SIP URI): behaviour}: the far end of every leg dialled to
 *   that target acts on its own, on the fake clock, from the dial (BEHAVIOUR_MS): `busy` (Ringing
 *   at 100 ms, Failed 486 at 300), `rejected` (603), `error` (404), `no_answer` (Ringing, then
 *   nothing), `human` / `voicemail` / `amd_timeout` (Ringing, answered at 300; an attached detector
 *   says HUMAN / VOICEMAIL / nothing at 600), `dial_error` (the dial throws). On such a leg a
 *   say() finishes 200 ms after it started. Lab model, not platform fact: the times are the
 *   contract cases' (voxengine/contract/README.md, "Destination cases").
 *
 * `violations` collects what the real platform would punish or what the scenario promises never
 * to do: terminate twice, hang up a leg twice or after it ended, close the agent twice, use the
 * API after terminate.
 */

const vm = require('node:vm');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const SCENARIO_PATH = path.join(__dirname, '..', 'scenario.js');

const AppEvents = Object.freeze({
  CallAlerting: 'Application.CallAlerting',
  Terminating: 'Application.Terminating',
  Terminated: 'Application.Terminated',
  Started: 'Application.Started',
  HttpRequest: 'Application.HttpRequest',
});

const CallEvents = Object.freeze({
  ToneReceived: 'Call.ToneReceived',
  Connected: 'Call.Connected',
  Disconnected: 'Call.Disconnected',
  Failed: 'Call.Failed',
  PlaybackFinished: 'Call.PlaybackFinished',
  PlaybackStarted: 'Call.PlaybackStarted',
  Ringing: 'Call.Ringing',
  RecordStarted: 'Call.RecordStarted',
});

const AgentsEvents = Object.freeze({
  Unknown: 'Cartesia.Agents.Unknown',
  HTTPResponse: 'Cartesia.Agents.HTTPResponse',
  ACK: 'Cartesia.Agents.ACK',
  Clear: 'Cartesia.Agents.Clear',
  DTMF: 'Cartesia.Agents.DTMF',
  Custom: 'Cartesia.Agents.Custom',
  WebSocketError: 'Cartesia.Agents.WebSocketError',
  ConnectorInformation: 'Cartesia.Agents.ConnectorInformation',
});

const CartesiaEvents = Object.freeze({
  WebSocketMediaStarted: 'Cartesia.Events.WebSocketMediaStarted',
  WebSocketMediaEnded: 'Cartesia.Events.WebSocketMediaEnded',
});

/** WebSocketMediaEnded comes after "1 second of silence" (Voximplant's Cartesia Events reference). */
const MEDIA_ENDED_SILENCE_MS = 1000;

const Modules = Object.freeze({ Cartesia: 'Cartesia', ApplicationStorage: 'ApplicationStorage', AMD: 'AMD' });

/** The AMD namespace's enums (voxengine.d.ts, voxengine-ci 28.0.0). */
const AmdEvents = Object.freeze({ DetectionComplete: 'AMD.Events.DetectionComplete', DetectionError: 'AMD.Events.DetectionError' });
const AmdResultClass = Object.freeze({ VOICEMAIL: 'VOICEMAIL', HUMAN: 'HUMAN', TIMEOUT: 'TIMEOUT', CALL_ENDED: 'CALL_ENDED' });
const AmdModel = Object.freeze({ BR: 'br', CL: 'cl', CO: 'colombia', KZ: 'kz', MX: 'mx', RU: 'ru', PH: 'ph', PE: 'pe', US: 'us', EU_GENERAL: 'eu_general' });

/** When a scripted far end acts, in ms after its leg was dialled (or its whisper started). */
const BEHAVIOUR_MS = Object.freeze({ ring: 100, outcome: 300, detection: 600, whisper: 200 });
const BEHAVIOURS = Object.freeze({
  busy: { fail: 486 }, rejected: { fail: 603 }, error: { fail: 404 }, no_answer: {},
  human: { answer: 'HUMAN' }, voicemail: { answer: 'VOICEMAIL' }, amd_timeout: { answer: null }, dial_error: {},
});

/** A few entries of the typings' VoiceList (Amazon en_US_Joanna is Call.say's default voice). */
const voice = (name) => Object.freeze({ voice: name });
const VoiceList = Object.freeze({
  Amazon: Object.freeze({
    en_US_Joanna: voice('Amazon.en_US_Joanna'),
    en_GB_Amy: voice('Amazon.en_GB_Amy'),
    Neural: Object.freeze({ en_US_Joanna: voice('Amazon.Neural.en_US_Joanna') }),
  }),
  Google: Object.freeze({ en_US_Neural2_C: voice('Google.en_US_Neural2_C') }),
});

/** The ApplicationStorage of a configured scenario (voxengine/README.md): what every test starts from. */
const SCENARIO_STORAGE = Object.freeze({
  CARTESIA_API_KEY: 'test-api-key',
  CARTESIA_AGENT_ID: 'agent_test',
  TRANSFER_NUMBER: '+15550003333',
  PSTN_CALLER_ID: '+15550004444',
});
const CONTROL_URL = 'https://203.0.113.10:12092/request/SESSIONSECRET.1700000000.1_203.0.113.10/TOKENSECRET';

function hmacHex(key, data) {
  return crypto.createHmac('sha256', key).update(data, 'utf8').digest('hex');
}

/** A listener registry that only accepts documented event names and function handlers. */
class Emitter {
  constructor(runtime, allowed) {
    this._runtime = runtime;
    this._allowed = new Set(Object.values(allowed));
    this._handlers = new Map();
  }

  addEventListener(event, handler) {
    if (!this._allowed.has(event)) throw new Error(`unknown event: ${String(event)}`);
    if (typeof handler !== 'function') throw new Error(`handler for ${event} is not a function`);
    if (!this._handlers.has(event)) this._handlers.set(event, []);
    this._handlers.get(event).push(handler);
  }

  removeEventListener(event, handler) {
    const list = this._handlers.get(event) || [];
    this._handlers.set(event, handler ? list.filter((h) => h !== handler) : []);
  }

  listenerCount(event) {
    return (this._handlers.get(event) || []).length;
  }

  /** Calls every handler now; returns the first handler's return value. */
  emit(event, payload) {
    let first;
    (this._handlers.get(event) || []).forEach((handler, i) => {
      const value = this._runtime._invoke(handler, payload);
      if (i === 0) first = value;
    });
    return first;
  }
}

class FakeCall extends Emitter {
  constructor(runtime, name, { incoming, callerid, number }) {
    super(runtime, CallEvents);
    this.name = name;
    this._id = `${name}-id`;
    this._incoming = incoming;
    this._callerid = callerid;
    this._number = number;
    this.connected = false;
    this.ended = false; // disconnected or failed, whoever ended it
    this.playing = null; // the text Call.say is playing into this call, until PlaybackFinished
    this.amd = null; // the FakeDetector given to the dial as `amd`
    this.tonesHandled = false;
    this.behaviour = null; // options.behaviours entry of its target, if any
  }

  id() { return this._id; }
  incoming() { return this._incoming; }
  callerid() { return this._callerid; }
  number() { return this._number; }
  state() { return this.ended ? 'TERMINATED' : this.connected ? 'CONNECTED' : 'PROGRESSING'; }

  answer() {
    this._runtime._effect('answer', { leg: this.name });
    this.connected = true;
    this._runtime._queue(() => this.emit(CallEvents.Connected, this._event(CallEvents.Connected)));
  }

  hangup() {
    this._runtime._effect('hangup', { leg: this.name });
    if (this.ended) this._runtime._violation(`hangup of ${this.name}, which had already ended`);
    if (this._hungUp) this._runtime._violation(`second hangup of ${this.name}`);
    this._hungUp = true;
    if (this.ended) return;
    if (this.connected) this._end(CallEvents.Disconnected, { internalCode: 200, reason: 'Normal hangup', duration: 1, cost: 0, direction: 'pstn' });
    else this._end(CallEvents.Failed, { code: 487, reason: 'Request Terminated' });
  }

  say(text, parameters) {
    this._runtime._maybeThrow('say');
    this._runtime._effect('say', { leg: this.name, text, parameters });
    if (this.ended || !this.connected) {
      this._runtime._violation(`say on ${this.name}, which is not connected`);
      return;
    }
    if (parameters !== undefined && (parameters === null || typeof parameters !== 'object')) {
      this._runtime._violation(`say on ${this.name} with parameters that are not a CallSayParameters object`);
    }
    this.playing = String(text);
    this._runtime._hear(this, `say:${this.playing}`);
    if (this.playing.length > 1500) {
      this._runtime._queue(() => this.playbackFinished('Text is too long'));
    } else if ((this._runtime.options.instantPlayback || []).includes(this.name)) {
      this._runtime._queue(() => this.playbackFinished());
    } else if (this.behaviour) {
      const playing = this.playing;
      this._runtime._schedule(() => {
        if (this.playing === playing) this.playbackFinished();
      }, BEHAVIOUR_MS.whisper);
    }
  }
  record(parameters) { this._runtime._effect('record', { leg: this.name, parameters }); }

  handleTones(doHandle) {
    this._runtime._effect('handleTones', { leg: this.name, doHandle });
    this.tonesHandled = doHandle !== false;
  }

  sendDigits(digits) {
    this._runtime._maybeThrow('sendDigits');
    this._runtime._effect('sendDigits', { leg: this.name, digits });
    if (this.ended || !this.connected) this._runtime._violation(`sendDigits on ${this.name}, which is not connected`);
    if (typeof digits !== 'string' || !/^[0-9*#p]+$/.test(digits)) this._runtime._violation(`sendDigits on ${this.name} with symbols other than 0-9 * # p`);
  }
  startPlayback(url) { this._runtime._effect('startPlayback', { leg: this.name, url }); }
  stopPlayback() { this._runtime._effect('stopPlayback', { leg: this.name }); }

  // --- driven by tests: what the far end (or the network) does -----------------------------------

  // Each returns whether the event was delivered: nothing is delivered for a leg that has ended.

  /** The far end of an outgoing leg signals progress (180/183): CallEvents.Ringing. */
  ring() {
    if (this.ended || this.connected || this._incoming) return false;
    this.emit(CallEvents.Ringing, this._event(CallEvents.Ringing));
    return true;
  }

  /**
   * The far end answers an outgoing leg. An attached detector then reports `amd` at once
   * ('HUMAN' by default: a person answering); `amd: null`: no verdict (see detection()).
   */
  remoteAnswer({ amd = AmdResultClass.HUMAN } = {}) {
    if (this.ended || this.connected) return false;
    this.connected = true;
    this.emit(CallEvents.Connected, this._event(CallEvents.Connected));
    if (amd !== null) this.detection(amd);
    return true;
  }

  /** The attached detector's verdict: AMD.Events.DetectionComplete {resultClass}. */
  detection(resultClass, confidence = 90) {
    if (!this.amd || this.ended || !this.connected) return false;
    this.amd.emit(AmdEvents.DetectionComplete, { amd: this.amd, call: this, callId: this._id, resultClass, confidence });
    return true;
  }

  /** The attached detector fails: AMD.Events.DetectionError {message}. */
  detectionError(message = 'detector failed') {
    if (!this.amd || this.ended) return false;
    this.amd.emit(AmdEvents.DetectionError, { amd: this.amd, callId: this._id, message });
    return true;
  }

  /** The far end presses a key: CallEvents.ToneReceived, only while the scenario handles tones. */
  tone(tone) {
    if (this.ended || !this.connected || !this.tonesHandled) return false;
    this.emit(CallEvents.ToneReceived, this._event(CallEvents.ToneReceived, { tone, type: '1' }));
    return true;
  }

  /** Acts out this leg's scripted behaviour (options.behaviours) on the fake clock. */
  _act(behaviour) {
    this.behaviour = behaviour;
    const plan = BEHAVIOURS[behaviour];
    const rt = this._runtime;
    rt._schedule(() => this.ring(), BEHAVIOUR_MS.ring);
    if (plan.fail) rt._schedule(() => this.remoteFail(plan.fail, `SIP ${plan.fail}`), BEHAVIOUR_MS.outcome);
    if (plan.answer !== undefined) {
      rt._schedule(() => this.remoteAnswer({ amd: null }), BEHAVIOUR_MS.outcome);
      if (plan.answer !== null) rt._schedule(() => this.detection(plan.answer), BEHAVIOUR_MS.detection);
    }
  }

  /** The far end hangs up (a connected leg; or an unanswered one, for tests of odd networks). */
  remoteHangup() {
    if (this.ended) return false;
    this.ended = true;
    this.playing = null;
    this.emit(CallEvents.Disconnected, this._event(CallEvents.Disconnected, { internalCode: 200, reason: 'Normal hangup', duration: 1, cost: 0, direction: 'pstn' }));
    return true;
  }

  /** An outgoing leg fails before it connects (486 busy, 480 unavailable, 603 rejected, ...). */
  remoteFail(code, reason = 'Failed') {
    if (this.ended) return false;
    this.ended = true;
    this.emit(CallEvents.Failed, this._event(CallEvents.Failed, { code, reason }));
    return true;
  }

  /**
   * A Call.say() / startPlayback() finished playing. Without a say() in progress nothing is
   * delivered, except on the caller leg, where older tests end playbacks the fake did not track.
   */
  playbackFinished(error) {
    if (this.ended) return false;
    if (this.playing === null && this.name !== 'caller') return false;
    if (this.playing !== null) {
      this.playing = null;
      this._runtime._hear(this, null);
    }
    this.emit(CallEvents.PlaybackFinished, this._event(CallEvents.PlaybackFinished, error ? { error } : {}));
    return true;
  }

  _end(event, extra) {
    this._runtime._queue(() => {
      if (this.ended) return;
      this.ended = true;
      this.playing = null;
      this.emit(event, this._event(event, extra));
    });
  }

  _event(name, extra) {
    return Object.assign({ call: this, name, id: this._id, headers: {} }, extra);
  }
}

/** AMD.AnsweringMachineDetector (voxengine.d.ts): its model, timeout, the call it is attached to. */
class FakeDetector extends Emitter {
  constructor(runtime, parameters) {
    super(runtime, AmdEvents);
    this.model = parameters.model;
    this.timeout = parameters.timeout;
    this.call = null;
  }

  id() { return 'amd-id'; }
  detect() { return Promise.resolve(AmdEvents.DetectionComplete); }
}

class FakeAgentsClient extends Emitter {
  constructor(runtime, parameters) {
    super(runtime, Object.assign({}, AgentsEvents, CartesiaEvents));
    this.name = 'agent';
    this.parameters = parameters;
    this.closedByScenario = false;
    this.socketClosed = false;
    this.started = false;
    this.audioOn = false; // the agent's audio is playing at VoxEngine now
    this.mediaStream = false; // between WebSocketMediaStarted and WebSocketMediaEnded
    this._endedTimer = null;
  }

  id() { return 'agent-id'; }
  webSocketId() { return 'agent-ws-id'; }
  start(parameters) {
    this._runtime._effect('agentStart', { parameters });
    this.started = true;
  }
  clearMediaBuffer(parameters) { this._runtime._effect('clearMediaBuffer', { parameters }); }

  custom(parameters) {
    this._runtime._effect('agentCustom', { parameters });
    this._runtime._maybeThrow('custom');
    if (!this.started) this._runtime._violation('agent custom() before start()');
    if (this.socketClosed || this.closedByScenario) this._runtime._violation('agent custom() after its WebSocket closed');
    let wire;
    try {
      wire = JSON.parse(JSON.stringify(parameters)); // what crosses the WebSocket
    } catch (err) {
      this._runtime._violation(`agent custom() with parameters that are not JSON: ${err.message}`);
      return;
    }
    this._runtime.customSent.push({ at: this._runtime.nowMs, parameters: wire });
  }
  dtmf(parameters) {
    this._runtime._effect('agentDtmf', { parameters });
    this._runtime._maybeThrow('dtmf');
    if (!this.started) this._runtime._violation('agent dtmf() before start()');
    if (this.socketClosed || this.closedByScenario) this._runtime._violation('agent dtmf() after its WebSocket closed');
    this._runtime.dtmfSent.push({ at: this._runtime.nowMs, parameters: JSON.parse(JSON.stringify(parameters)) });
  }

  /** The agent sends keys (Line's send_dtmf): Cartesia.AgentsEvents.DTMF with Cartesia's message. */
  agentDtmf(digits) {
    if (this.closedByScenario || this.socketClosed) return false;
    this.fire(AgentsEvents.DTMF, { event: 'dtmf', stream_id: 'stream-1', dtmf: digits });
    return true;
  }
  sendMediaTo(unit) { this._runtime._effect('sendMediaTo', { from: this.name, to: unit && unit.name }); }
  stopMediaTo(unit) { this._runtime._effect('stopMediaTo', { from: this.name, to: unit && unit.name }); }

  close() {
    this._runtime._effect('agentClose', {});
    if (this.closedByScenario) this._runtime._violation('agent client closed twice');
    this.closedByScenario = true;
    if (!this.socketClosed) this._runtime._queue(() => this._socketClose(1000, 'closed by client'));
  }

  // --- driven by tests -----------------------------------------------------------------------------

  /** Cartesia (or the network) closes the WebSocket. */
  remoteClose(code = 1006, reason = 'abnormal closure') {
    this._socketClose(code, reason);
  }

  /** The agent's audio starts playing at VoxEngine (WebSocketMediaStarted unless its stream is still open). */
  audioStarts() {
    if (this.closedByScenario || this.audioOn) return false;
    this.audioOn = true;
    if (this._endedTimer !== null) this._runtime._cancel(this._endedTimer);
    this._endedTimer = null;
    if (!this.mediaStream) {
      this.mediaStream = true;
      this.fire(CartesiaEvents.WebSocketMediaStarted, {});
    }
    return true;
  }

  /** The agent's audio stops: WebSocketMediaEnded 1 s later, unless audio starts again first. */
  audioStops() {
    if (this.closedByScenario || !this.audioOn) return false;
    this.audioOn = false;
    this._endedTimer = this._runtime._schedule(() => {
      this._endedTimer = null;
      this.mediaStream = false;
      if (!this.closedByScenario) this.fire(CartesiaEvents.WebSocketMediaEnded, {});
    }, MEDIA_ENDED_SILENCE_MS);
    return true;
  }

  /** A Cartesia.AgentsEvents / Cartesia.Events event from the agent's side. */
  fire(event, data) {
    this.emit(event, { client: this, data });
  }

  _socketClose(code, reason) {
    if (this.socketClosed) return;
    this.socketClosed = true;
    const callback = this.parameters && this.parameters.onWebSocketClose;
    if (typeof callback === 'function') this._runtime._invoke(callback, { code, reason });
  }
}

/**
 * Loads scenario.js into a fresh context.
 * options:
 *   storage       ApplicationStorage contents {KEY: value}
 *   nowSeconds    the receiver's clock (unix seconds); default 1700000000
 *   storageError  make ApplicationStorage.get reject with this message
 *   agentError    make Cartesia.createAgentsClient reject with this message
 *   holdAgent     keep createAgentsClient pending until runtime.releaseAgent()
 *   hmac          replacement for Crypto.hmac_sha256 (to imitate a different platform primitive)
 *   throwOn       {callPSTN: message, say: message, custom: message}: make that API throw
 *                 (every time; throwNext() makes only the next call throw)
 *   source        scenario source text (defaults to scenario.js)
 *   instantPlayback  leg names (e.g. ['caller']) whose say() reports PlaybackFinished at once
 *                 (queued, as the platform's events are), for replays that do not drive playback
 *   behaviours    {target: behaviour}: far ends that act by themselves (see the header)
 *   noAmd         no AMD namespace (the module is not there)
 */
class FakeVoxEngine {
  constructor(options = {}) {
    this.options = options;
    this.nowMs = (options.nowSeconds === undefined ? 1700000000 : options.nowSeconds) * 1000;
    this.effects = [];
    this.logs = [];
    this.errors = [];
    this.violations = [];
    this.modules = [];
    this.caller = null;
    this.consults = [];
    this.agent = null;
    this.terminated = false;
    this.customSent = []; // every AgentsClient.custom() call, as sent: {at, parameters}
    this.dtmfSent = []; // every AgentsClient.dtmf() call, as sent: {at, parameters}
    this.audio = []; // every change of what a unit hears: {at, leg, source} (source null: nothing)
    this._throwNext = {};
    this._timers = [];
    this._timerSeq = 0;
    this._queueItems = [];
    this._app = new Emitter(this, AppEvents);
    this.context = vm.createContext(this._globals());
    vm.runInContext('Date', this.context).now = () => this.nowMs;
    const source = options.source === undefined ? fs.readFileSync(SCENARIO_PATH, 'utf8') : options.source;
    vm.runInContext(source, this.context, { filename: 'scenario.js' });
  }

  get consult() {
    return this.consults[this.consults.length - 1] || null;
  }

  // --- driving the session -------------------------------------------------------------------------

  start(accessSecureURL = CONTROL_URL) {
    this._app.emit(AppEvents.Started, {
      accessURL: accessSecureURL.replace('https:', 'http:').replace(':12092', ':12091'),
      accessSecureURL,
      accountId: 1,
      applicationId: 2,
      logURL: 'https://example.invalid/log',
      sessionId: 3,
      name: AppEvents.Started,
    });
    return this.settle();
  }

  alert({ callerid = '+15550001111', destination = '+15550002222' } = {}) {
    this.caller = new FakeCall(this, 'caller', { incoming: true, callerid, number: destination });
    this._app.emit(AppEvents.CallAlerting, {
      call: this.caller,
      name: AppEvents.CallAlerting,
      callerid,
      destination,
      toURI: `${destination}@example.invalid`,
      fromURI: `${callerid}@example.invalid`,
      displayName: callerid,
      headers: {},
      scheme: {},
    });
    return this.settle();
  }

  /** Started + CallAlerting + agent connected: the call as the agent sees it. */
  async startCall(callOptions) {
    await this.start();
    await this.alert(callOptions);
    return this;
  }

  /**
   * One control request, delivered as VoxEngine would: only X- headers, as [{key, value}]
   * (headerShape 'object' passes them as a plain object instead). Returns the handler's return
   * value, which VoxEngine would send as the response body.
   */
  http({ method = 'POST', body = '', headers = {}, headerShape = 'array' } = {}) {
    if (this._app.listenerCount(AppEvents.HttpRequest) !== 1) throw new Error('expected exactly one HttpRequest handler');
    const visible = Object.entries(headers).filter(([name]) => /^x-/i.test(name));
    const payload = {
      name: AppEvents.HttpRequest,
      method,
      path: '/request/SESSIONSECRET.1700000000.1_203.0.113.10/TOKENSECRET',
      content: body,
      headers: headerShape === 'array' ? visible.map(([key, value]) => ({ key, value })) : Object.fromEntries(visible),
    };
    return this._app.emit(AppEvents.HttpRequest, payload);
  }

  /** Delivers an arbitrary HttpRequest event payload (for hostile-input tests). */
  rawHttp(payload) {
    return this._app.emit(AppEvents.HttpRequest, payload);
  }

  /** Evaluates an expression inside the scenario's context (constants, pure functions). */
  evaluate(expression) {
    return vm.runInContext(expression, this.context);
  }

  /** http() with a JSON body; returns the parsed response. */
  control(json, headers = {}) {
    return JSON.parse(this.http({ body: JSON.stringify(json), headers }));
  }

  releaseAgent() {
    if (!this._heldAgent) throw new Error('no agent creation is being held');
    const { resolve, client } = this._heldAgent;
    this._heldAgent = null;
    resolve(client);
    return this.settle();
  }

  /** Advances the fake clock, running due timers in order. */
  async advance(ms) {
    const until = this.nowMs + ms;
    for (;;) {
      this._timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this._timers[0];
      if (!next || next.at > until) break;
      this._timers.shift();
      this.nowMs = next.at;
      this._invoke(next.fn, undefined);
      await this.settle();
    }
    this.nowMs = until;
    await this.settle();
  }

  /**
   * Runs queued platform events until none is left. Every fake asynchronous answer is an already
   * settled promise, so one macrotask tick lets the scenario's async handlers run as far as they
   * can; a handler waiting on something held (holdAgent) simply stays pending.
   */
  async settle() {
    for (let round = 0; round < 1000; round++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (!this._queueItems.length) return;
      const items = this._queueItems.splice(0);
      items.forEach((fn) => fn());
    }
    throw new Error('the session did not settle');
  }

  // --- what happened -------------------------------------------------------------------------------

  count(type, filter = {}) {
    return this.effects.filter((e) => e.type === type && Object.entries(filter).every(([k, v]) => e[k] === v)).length;
  }

  /** The fake-clock times at which `leg` was hung up (by the scenario). */
  hangupTimes(leg = 'caller') {
    return this.effects.filter((e) => e.type === 'hangup' && e.leg === leg).map((e) => e.at);
  }

  pendingTimers() {
    return this._timers.length;
  }

  /** The metadata of every AgentsClient.custom() call, in order. */
  outcomes() {
    return this.customSent.map((sent) => sent.parameters && sent.parameters.metadata);
  }

  /** What a unit hears now: 'agent', another leg's name, 'say:<text>', or null. */
  hearing(leg) {
    for (let i = this.audio.length - 1; i >= 0; i--) if (this.audio[i].leg === leg) return this.audio[i].source;
    return null;
  }

  /** Makes only the next call of `api` ('callPSTN', 'say', 'custom') throw `message`. */
  throwNext(api, message) {
    this._throwNext[api] = message;
  }

  // --- internals -----------------------------------------------------------------------------------

  _effect(type, details) {
    if (this.terminated) this._violation(`${type} after VoxEngine.terminate()`);
    this.effects.push(Object.assign({ type, at: this.nowMs }, details));
  }

  _maybeThrow(api) {
    const once = this._throwNext[api];
    if (once) {
      delete this._throwNext[api];
      throw new Error(once);
    }
    const message = this.options.throwOn && this.options.throwOn[api];
    if (message) throw new Error(message);
  }

  _hear(unit, source) {
    const leg = (unit && unit.name) || String(unit);
    if (this.hearing(leg) !== source) this.audio.push({ at: this.nowMs, leg, source });
  }

  /**
   * VoxEngine.sendMediaBetween / stopMediaBetween: both directions. A new stream into a call
   * replaces its playback (Call.say: "A new incoming stream always replaces the previous one").
   */
  _bridge(a, b, on) {
    for (const [to, from] of [[a, b], [b, a]]) {
      if (on) {
        if (to instanceof FakeCall) {
          if (to.ended) this._violation(`media to ${to.name}, which has ended`);
          to.playing = null;
        }
        this._hear(to, from.name);
      } else if (this.hearing(to.name) === from.name) {
        this._hear(to, null);
      }
    }
  }

  _violation(message) {
    this.violations.push(message);
  }

  /** An outgoing leg to `target` (callPSTN / callSIP), its detector attached, its behaviour started. */
  _dial(target, callerid, parameters) {
    const behaviour = (this.options.behaviours || {})[target];
    if (behaviour !== undefined && !BEHAVIOURS[behaviour]) throw new Error(`unknown behaviour: ${behaviour}`);
    if (behaviour === 'dial_error') throw new Error('dial error (behaviour)');
    this._maybeThrow('callPSTN');
    const leg = new FakeCall(this, this.consults.length ? `consult${this.consults.length + 1}` : 'consult', { incoming: false, callerid, number: target });
    this.consults.push(leg);
    const amd = parameters && parameters.amd;
    if (amd !== undefined) {
      if (!(amd instanceof FakeDetector)) this._violation('dial with an amd that is not an AnsweringMachineDetector');
      else if (amd.call) this._violation('one detector attached to two calls');
      else {
        amd.call = leg;
        leg.amd = amd;
      }
    }
    if (behaviour) leg._act(behaviour);
    return leg;
  }

  _queue(fn) {
    this._queueItems.push(fn);
  }

  /** A fake timer (the scenario's setTimeout and the fake's own platform timers): its id. */
  _schedule(fn, ms) {
    const timer = { id: ++this._timerSeq, seq: this._timerSeq, at: this.nowMs + Math.max(0, Number(ms) || 0), fn };
    this._timers.push(timer);
    return timer.id;
  }

  _cancel(id) {
    this._timers = this._timers.filter((t) => t.id !== id);
  }

  /** Calls a scenario handler the way the platform would: errors are recorded, not thrown. */
  _invoke(fn, payload) {
    let value;
    try {
      value = fn(payload);
    } catch (err) {
      this.errors.push(err);
      return undefined;
    }
    if (value && typeof value.then === 'function') Promise.resolve(value).catch((err) => this.errors.push(err));
    return value;
  }

  _globals() {
    const rt = this;
    const storage = this.options.storage || {};
    const unit = (u) => (u && u.name) || String(u);
    const AMD = {
      Events: AmdEvents,
      ResultClass: AmdResultClass,
      Model: AmdModel,
      create(parameters) {
        rt._effect('amdCreate', { parameters });
        const p = parameters || {};
        if (!Object.values(AmdModel).includes(p.model)) rt._violation(`AMD.create with a model that is not an AMD.Model: ${String(p.model)}`);
        if (p.timeout !== undefined && !(typeof p.timeout === 'number' && p.timeout >= 0 && p.timeout <= 20000)) rt._violation(`AMD.create with timeout ${String(p.timeout)} outside [0, 20000]`);
        return new FakeDetector(rt, p);
      },
    };
    return {
      ...(this.options.noAmd ? {} : { AMD }),
      Modules,
      AppEvents,
      CallEvents,
      VoiceList,
      require(moduleName) {
        if (!Object.values(Modules).includes(moduleName)) throw new Error(`unknown module: ${String(moduleName)}`);
        rt.modules.push(moduleName);
      },
      Logger: { write: (message) => rt.logs.push(String(message)) },
      Crypto: {
        hmac_sha256: (key, data) => (rt.options.hmac ? rt.options.hmac(key, data) : hmacHex(key, data)),
        sha256: (data) => crypto.createHash('sha256').update(data, 'utf8').digest('hex'),
      },
      ApplicationStorage: {
        get(key) {
          if (rt.options.storageError) return Promise.reject(new Error(rt.options.storageError));
          const value = Object.prototype.hasOwnProperty.call(storage, key) ? storage[key] : undefined;
          return Promise.resolve(value === undefined ? null : { key, value, expireAt: 0 });
        },
      },
      Cartesia: {
        AgentsEvents,
        Events: CartesiaEvents,
        createAgentsClient(parameters) {
          rt._effect('createAgentsClient', { parameters });
          if (rt.options.agentError) return Promise.reject(new Error(rt.options.agentError));
          const client = new FakeAgentsClient(rt, parameters);
          rt.agent = client;
          if (!rt.options.holdAgent) return Promise.resolve(client);
          return new Promise((resolve) => {
            rt._heldAgent = { resolve, client };
          });
        },
      },
      VoxEngine: {
        addEventListener: (event, handler) => rt._app.addEventListener(event, handler),
        removeEventListener: (event, handler) => rt._app.removeEventListener(event, handler),
        callPSTN(number, callerid, parameters) {
          rt._effect('callPSTN', { number, callerid, parameters });
          return rt._dial(number, callerid, parameters);
        },
        callSIP(to, parameters) {
          rt._effect('callSIP', { to, parameters });
          if (!parameters || typeof parameters !== 'object') rt._violation('callSIP without a CallSIPParameters object');
          return rt._dial(to, parameters && parameters.callerid, parameters);
        },
        sendMediaBetween(a, b) {
          rt._effect('sendMediaBetween', { a: unit(a), b: unit(b) });
          rt._bridge(a, b, true);
        },
        stopMediaBetween(a, b) {
          rt._effect('stopMediaBetween', { a: unit(a), b: unit(b) });
          rt._bridge(a, b, false);
        },
        terminate() {
          if (rt.terminated) rt._violation('VoxEngine.terminate() called twice');
          rt.effects.push({ type: 'terminate' });
          rt.terminated = true;
        },
      },
      setTimeout(fn, ms) {
        if (typeof fn !== 'function') throw new Error('setTimeout needs a function');
        return rt._schedule(fn, ms);
      },
      clearTimeout(id) {
        rt._cancel(id);
      },
    };
  }
}

module.exports = {
  FakeVoxEngine, AppEvents, CallEvents, AgentsEvents, CartesiaEvents, VoiceList, CONTROL_URL, SCENARIO_STORAGE, hmacHex,
  MEDIA_ENDED_SILENCE_MS, AmdEvents, AmdResultClass, AmdModel, BEHAVIOURS, BEHAVIOUR_MS,
};
