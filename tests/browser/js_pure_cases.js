// Pure checks of initedit_spec.js and initedit_geometry.js under node (no DOM). The spec's facts come from the
// server side (argv[2]: lib_initedit.webui.args.spec_facts() as JSON), as the page gets them from ui.py.
// Prints one JSON line with the editor's serialized outputs so the Python side can compare them with
// lib_initedit.spec: parse_spec(text).to_dict() must be exactly what the JS wrote.
"use strict";
const fs = require("fs");
const path = require("path");
const assert = require("assert");

global.window = {};
const dir = path.join(__dirname, "..", "..", "javascript");
for (const f of ["initedit_spec.js", "initedit_geometry.js"]) {
    new Function("window", fs.readFileSync(path.join(dir, f), "utf8"))(global.window);
}
const facts = JSON.parse(process.argv[2]);
const S = window.InitEdit.spec.codec(facts), G = window.InitEdit.geometry;
const out = [];
assert.throws(() => window.InitEdit.spec.codec(null), /no spec facts/); // no facts, no editor: no copies to fall back on

// parse is lenient, serialize strict: unknown keys dropped, defaults left out, boxes ordered and clamped
let r = S.parse(JSON.stringify({reroll: [{box: [0.6, 0.5, 0.2, 1.4], seed: "12", extra: 1}], rounds: 99, vary: "x", zzz: 1}));
assert.strictEqual(r.error, null);
let text = S.serialize(r.spec);
assert.deepStrictEqual(JSON.parse(text), {reroll: [{box: [0.2, 0.5, 0.6, 1], seed: 12, strength: 1, feather: 0}], rounds: 8,
    ...Object.fromEntries(Object.entries(facts.pinned).filter(([, s]) => s.includes("reroll"))
        .map(([k]) => [k, facts.fields.find(f => f.name === k).default]))}); // keep is written whenever there are regions
out.push(text);
assert.strictEqual(S.serialize(S.parse("").spec), "{}");
assert.ok(S.parse("{oops").error.includes("not valid JSON"));
assert.ok(S.parse("[1]").error);
// a pasted, still-quoted infotext value
r = S.parse(JSON.stringify(JSON.stringify({layout: [{phrase: "cat", box: [0, 0, 0.5, 0.5]}], heatmaps: true, layers: "paper"})));
out.push(S.serialize(r.spec));
// the fields pinned to a section (facts.pinned: keep with the regions, guidance... with the boxes) are always written
const pinnedTo = section => Object.fromEntries(Object.entries(facts.pinned).filter(([, s]) => s.includes(section))
    .map(([k]) => [k, facts.fields.find(f => f.name === k).default]));
assert.ok("guidance" in pinnedTo("layout") && "keep" in pinnedTo("reroll"));
assert.deepStrictEqual(JSON.parse(out[1]), {layout: [{phrase: "cat", box: [0, 0, 0.5, 0.5]}], layers: "paper", heatmaps: true,
    ...pinnedTo("layout")});
// the new fields: clamped to the server's limits, left out at their default unless pinned to their section
r = S.parse(JSON.stringify({keep: 0.25, guidance: 1e9, guidance_steps: -3, layout: [{phrase: "dog", box: [0.1, 0.1, 0.9, 0.9]}],
    reroll: [{box: [0, 0, 1, 1], seed: 3}]}));
assert.strictEqual(r.spec.guidance, facts.fields.find(f => f.name === "guidance").max);
assert.strictEqual(r.spec.guidance_steps, 0);
out.push(S.serialize(r.spec));
out.push(S.serialize(S.parse(JSON.stringify({vary: "reroll", keep: 0.5, guidance: 2, guidance_steps: 0.9})).spec));
out.push(S.serialize(S.parse("{}").spec));
// masks keep their payload, a data: prefix is stripped; seeds are clamped to the parser's range
r = S.parse(JSON.stringify({reroll: [{mask: "data:image/png;base64,AAAA", seed: 1e12}]}));
assert.strictEqual(r.spec.reroll[0].mask, "AAAA");
assert.strictEqual(r.spec.reroll[0].seed, facts.max_seed);

// infotext reader: quoted (json.dumps), bare JSON, plain values
const spec = {reroll: [{box: [0.1, 0.1, 0.2, 0.2], seed: 5, strength: 1, feather: 0}]};
const it = "cat, photo\nSteps: 4, Seed: 1, InitEdit: " + JSON.stringify(JSON.stringify(spec)) + ", Version: v1";
assert.deepStrictEqual(JSON.parse(S.infotextValue(it, "InitEdit")), spec);
assert.deepStrictEqual(JSON.parse(S.infotextValue("Steps: 4, InitEdit: " + JSON.stringify(spec) + ", X: 1", "InitEdit")), spec);
assert.strictEqual(S.infotextValue("Steps: 4, Seed: 77, Size: 64x64", "Seed"), "77");
assert.strictEqual(S.infotextValue("Steps: 4", "InitEdit"), null);

// phrases
assert.ok(S.phraseInPrompt("Red  Car", "a cat and a red car"));
assert.ok(!S.phraseInPrompt("bus", "a cat and a red car"));
assert.ok(!S.phraseInPrompt("", "a cat"));
const words = S.promptWords("a (cat:1.2) and a red car, <lora:x:0.5> street");
assert.deepStrictEqual(words, ["cat", "red", "car", "red car", "street"]);

// geometry
assert.strictEqual(G.hitTest([0.2, 0.2, 0.6, 0.6], {x: 0.4, y: 0.4}, 0.01, 0.01), "move");
assert.strictEqual(G.hitTest([0.2, 0.2, 0.6, 0.6], {x: 0.6, y: 0.6}, 0.01, 0.01), "se");
assert.strictEqual(G.hitTest([0.2, 0.2, 0.6, 0.6], {x: 0.2, y: 0.4}, 0.01, 0.01), "w");
assert.strictEqual(G.hitTest([0.2, 0.2, 0.6, 0.6], {x: 0.7, y: 0.4}, 0.01, 0.01), null);
const near = (a, b) => assert.ok(a.every((v, i) => Math.abs(v - b[i]) < 1e-9), JSON.stringify([a, b]));
near(G.drag("move", [0.2, 0.2, 0.6, 0.6], 0.9, -0.9, 0.01), [0.6, 0, 1, 0.4]); // stops at the border, keeps its size
const shrunk = G.drag("e", [0.2, 0.2, 0.6, 0.6], -1, 0, 0.01);
assert.ok(Math.abs(shrunk[2] - 0.21) < 1e-9 && shrunk[0] === 0.2);
assert.deepStrictEqual(G.span({x: 0.5, y: -0.2}, {x: 0.1, y: 0.3}), [0.1, 0, 0.5, 0.3]);

console.log(JSON.stringify(out));
