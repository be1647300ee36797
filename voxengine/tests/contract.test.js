'use strict';
/**
 * Replays every case of voxengine/contract/control_cases.json against scenario.js, and checks
 * that the case file covers every refusal code of docs/control-contract.md.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { FakeVoxEngine, SCENARIO_STORAGE } = require('./fake_voxengine');
const { loadCases, lintCase, buildRequest, effectKinds, checkStep } = require('./contract_replay');

const file = loadCases();
const CONTRACT_DOC = path.join(__dirname, '..', '..', 'docs', 'control-contract.md');

function settingsFor(kase) {
  const storage = Object.assign({}, SCENARIO_STORAGE);
  if (kase.signing) storage.VOX_CONTROL_SECRET = file.secret;
  return storage;
}

test('the case file is well-formed', () => {
  assert.equal(file.format, 1);
  assert.equal(typeof file.secret, 'string');
  assert.ok(Number.isInteger(file.now));
  const names = new Set();
  for (const kase of file.cases) {
    assert.deepEqual(lintCase(kase), [], kase.name);
    assert.ok(!names.has(kase.name), `duplicate case name: ${kase.name}`);
    names.add(kase.name);
  }
});

test('the case file covers every refusal code of the contract, and accepted and duplicate answers', () => {
  const doc = fs.readFileSync(CONTRACT_DOC, 'utf8');
  // Only the refusal-code table (`| code | when |`): the doc has other tables of backticked names.
  const table = doc.slice(doc.indexOf('| code | when |')).split(/\n\s*\n/)[0];
  const documented = [...table.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
  assert.ok(documented.length >= 10, `found only ${documented.length} codes in the contract table`);
  const responses = file.cases.flatMap((kase) => kase.steps.map((step) => step.expect.response));
  for (const code of documented) {
    assert.ok(responses.some((r) => r.error === code), `no case expects ${code}`);
  }
  assert.ok(responses.some((r) => r.ok === true && r.action === 'end_call'));
  assert.ok(responses.some((r) => r.ok === true && r.action === 'call_transfer'));
  assert.ok(responses.some((r) => r.ok === true && r.duplicate === true));
  assert.ok(responses.some((r) => r.ok === false && r.duplicate === true));
});

for (const kase of file.cases) {
  test(`contract: ${kase.name}`, async () => {
    const rt = new FakeVoxEngine({ storage: settingsFor(kase), nowSeconds: file.now });
    await rt.startCall();
    for (const [i, step] of kase.steps.entries()) {
      const before = rt.effects.length;
      const raw = rt.http(buildRequest(step.request, file));
      await rt.settle();
      const problems = checkStep(step.expect, raw, effectKinds(rt.effects.slice(before)));
      assert.deepEqual(problems, [], `step ${i + 1}`);
    }
    assert.deepEqual(rt.errors, []);
    assert.deepEqual(rt.violations, []);
  });
}

// The checker must be able to fail, or the replay above proves nothing.
test('checkStep reports every kind of mismatch', () => {
  const expect = { response: { ok: true, id: 'a', action: 'end_call' }, effects: ['hangup'] };
  const good = JSON.stringify({ ok: true, id: 'a', action: 'end_call' });
  assert.deepEqual(checkStep(expect, good, ['hangup']), []);
  assert.equal(checkStep(expect, JSON.stringify({ ok: false, error: 'bad_json' }), ['hangup']).length, 3);
  assert.equal(checkStep(expect, good, []).length, 1);
  assert.equal(checkStep(expect, good, ['hangup', 'transfer']).length, 1);
  assert.equal(checkStep(expect, JSON.stringify({ ok: true, id: 'a', action: 'end_call', duplicate: true }), ['hangup']).length, 1);
  assert.equal(checkStep(expect, 'not json', ['hangup']).length, 1);
  assert.equal(checkStep(expect, '[1]', ['hangup']).length, 1);
});

test('buildRequest pads to exact UTF-8 sizes and signs what it sends', () => {
  const request = buildRequest({ json: { id: 'a', note: '\u00e9' }, pad_to_bytes: 100, sign: { t_offset: -5 } }, file);
  assert.equal(Buffer.byteLength(request.body, 'utf8'), 100);
  assert.deepEqual(JSON.parse(request.body), { id: 'a', note: '\u00e9' });
  const t = file.now - 5;
  const { hmacHex } = require('./fake_voxengine');
  assert.equal(request.headers['X-Vox-Signature'], `t=${t},v1=${hmacHex(file.secret, `${t}.${request.body}`)}`);
  assert.throws(() => buildRequest({ body: 'x'.repeat(10), pad_to_bytes: 5 }, file));
});
