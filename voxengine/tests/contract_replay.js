'use strict';
/**
 * Replays voxengine/contract/control_cases.json (format: voxengine/contract/README.md).
 * Pure helpers: building a request from a case step and judging a response; the test file wires
 * them to the fake VoxEngine runtime.
 */

const fs = require('node:fs');
const path = require('node:path');
const { hmacHex } = require('./fake_voxengine');

const CASES_PATH = path.join(__dirname, '..', 'contract', 'control_cases.json');
const EFFECT_KINDS = ['hangup', 'transfer'];
const REQUEST_FIELDS = ['method', 'headers', 'body', 'json', 'pad_to_bytes', 'sign', 'signature'];

function loadCases() {
  return JSON.parse(fs.readFileSync(CASES_PATH, 'utf8'));
}

/** Problems with the shape of a case (empty when well-formed). */
function lintCase(kase) {
  const problems = [];
  if (typeof kase.name !== 'string' || !kase.name) problems.push('name must be a non-empty string');
  if (typeof kase.signing !== 'boolean') problems.push('signing must be a boolean');
  if (!Array.isArray(kase.steps) || kase.steps.length === 0) problems.push('steps must be a non-empty array');
  (kase.steps || []).forEach((step, i) => {
    const at = `step ${i + 1}: `;
    const request = step.request || {};
    for (const key of Object.keys(request)) if (!REQUEST_FIELDS.includes(key)) problems.push(`${at}unknown request field ${key}`);
    if (('body' in request) === ('json' in request)) problems.push(`${at}exactly one of body and json`);
    if ('body' in request && typeof request.body !== 'string') problems.push(`${at}body must be a string`);
    if ('sign' in request && 'signature' in request) problems.push(`${at}sign and signature are exclusive`);
    const expect = step.expect || {};
    if (!expect.response || typeof expect.response.ok !== 'boolean') problems.push(`${at}expect.response.ok must be a boolean`);
    if (!Array.isArray(expect.effects) || expect.effects.some((e) => !EFFECT_KINDS.includes(e))) {
      problems.push(`${at}expect.effects must list only ${EFFECT_KINDS.join(', ')}`);
    }
  });
  return problems;
}

function utf8Length(text) {
  return Buffer.byteLength(text, 'utf8');
}

/** The HTTP request a step describes: {method, body, headers}. */
function buildRequest(request, file) {
  let body = 'json' in request ? JSON.stringify(request.json) : request.body;
  if (request.pad_to_bytes !== undefined) {
    const missing = request.pad_to_bytes - utf8Length(body);
    if (missing < 0) throw new Error(`body is already longer than pad_to_bytes (${request.pad_to_bytes})`);
    body += ' '.repeat(missing); // trailing JSON whitespace: same document, exact size
  }
  const headers = Object.assign({}, request.headers || {});
  if (request.sign) {
    const t = String(file.now + (request.sign.t_offset || 0));
    const secret = request.sign.secret === undefined ? file.secret : request.sign.secret;
    const signedBody = request.sign.body === undefined ? body : request.sign.body;
    headers['X-Vox-Signature'] = `t=${t},v1=${hmacHex(secret, `${t}.${signedBody}`)}`;
  } else if (request.signature !== undefined) {
    headers['X-Vox-Signature'] = request.signature;
  }
  return { method: request.method || 'POST', body, headers };
}

/** Effect kinds of a slice of recorded fake effects. */
function effectKinds(effects) {
  const kinds = new Set();
  for (const effect of effects) {
    if (effect.type === 'hangup') kinds.add('hangup');
    if (effect.type === 'callPSTN') kinds.add('transfer');
  }
  return [...kinds].sort();
}

function isDeepEqual(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Problems with one step's outcome (empty when it matches). The expected response is a subset
 * of the actual JSON object, except `duplicate`: when the expectation does not say
 * `"duplicate": true`, the response must not say it either. Effects are compared as sets.
 */
function checkStep(expect, rawResponse, kinds) {
  const problems = [];
  let actual;
  try {
    actual = JSON.parse(rawResponse);
  } catch (err) {
    return [`response is not JSON: ${String(rawResponse).slice(0, 200)}`];
  }
  if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return ['response is not a JSON object'];
  for (const [key, value] of Object.entries(expect.response)) {
    if (!isDeepEqual(actual[key], value)) problems.push(`response.${key}: expected ${JSON.stringify(value)}, got ${JSON.stringify(actual[key])}`);
  }
  if (expect.response.duplicate === undefined && actual.duplicate === true) problems.push('response has an unexpected "duplicate": true');
  const wanted = [...new Set(expect.effects)].sort();
  if (!isDeepEqual(wanted, kinds)) problems.push(`effects: expected ${JSON.stringify(wanted)}, got ${JSON.stringify(kinds)}`);
  return problems;
}

module.exports = { loadCases, lintCase, buildRequest, effectKinds, checkStep, EFFECT_KINDS, CASES_PATH };
