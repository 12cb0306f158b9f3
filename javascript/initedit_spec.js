// InitEdit: the spec JSON as the editor sees it (parse leniently, emit only the keys lib_initedit/spec.py knows).
// The Python parser is the authority; this file only keeps the editor from writing anything it would reject.
(function(ns) {
    "use strict";

    // mirrors lib_initedit/spec.py (VARY_MODES, METHODS, LAYER_CHOICES, MAX_SEED, MAX_ROUNDS)
    var DEFAULTS = {vary: "seed", rounds: 1, hires: false, method: "swap", layers: "level", heatmaps: false};
    var VARY = ["seed", "reroll"];
    var METHODS = ["swap", "rebuild"];
    var LAYERS = ["paper", "level"];
    var MAX_SEED = 4294967295;
    var MAX_ROUNDS = 8;

    function clamp(v, lo, hi) {
        return Math.min(hi, Math.max(lo, v));
    }

    function round4(v) {
        return Math.round(v * 10000) / 10000;
    }

    function num(v, fallback) {
        var n = typeof v === "number" ? v : parseFloat(v);
        return isFinite(n) ? n : fallback;
    }

    // [x0, y0, x1, y1] fractions, ordered and clamped, or null when it is not a box
    function normBox(b) {
        if (!Array.isArray(b) || b.length !== 4) return null;
        var v = b.map(function(x) {
            return num(x, NaN);
        });
        if (v.some(isNaN)) return null;
        var x0 = clamp(Math.min(v[0], v[2]), 0, 1), x1 = clamp(Math.max(v[0], v[2]), 0, 1);
        var y0 = clamp(Math.min(v[1], v[3]), 0, 1), y1 = clamp(Math.max(v[1], v[3]), 0, 1);
        return [x0, y0, x1, y1];
    }

    function stripDataUrl(s) {
        var i = s.indexOf("base64,");
        return s.startsWith("data:") && i >= 0 ? s.slice(i + 7) : s;
    }

    function parseRegion(r) {
        if (!r || typeof r !== "object") return null;
        var out = {
            seed: clamp(Math.trunc(num(r.seed, -1)), -1, MAX_SEED),
            strength: clamp(num(r.strength, 1), 0, 1),
            feather: clamp(num(r.feather, 0), 0, 0.5),
        };
        if (typeof r.mask === "string" && r.mask) {
            out.mask = stripDataUrl(r.mask);
        } else {
            out.box = normBox(r.box);
            if (!out.box) return null;
        }
        return out;
    }

    function parseLayoutBox(l) {
        if (!l || typeof l !== "object") return null;
        var box = normBox(l.box);
        if (!box) return null;
        return {phrase: typeof l.phrase === "string" ? l.phrase : "", box: box};
    }

    function empty() {
        return {reroll: [], vary: DEFAULTS.vary, layout: [], rounds: DEFAULTS.rounds, hires: DEFAULTS.hires,
            method: DEFAULTS.method, layers: DEFAULTS.layers, heatmaps: DEFAULTS.heatmaps};
    }

    // text -> {spec, error}; an empty text is the empty spec; unknown keys are dropped
    function parse(text) {
        var spec = empty();
        var src = (text || "").trim();
        if (!src) return {spec: spec, error: null};
        var obj;
        try {
            obj = JSON.parse(src);
        } catch (e) {
            return {spec: spec, error: "not valid JSON: " + e.message};
        }
        if (typeof obj === "string") { // a quoted infotext value pasted as is
            try {
                obj = JSON.parse(obj);
            } catch (e) {
                return {spec: spec, error: "not valid JSON: " + e.message};
            }
        }
        if (!obj || typeof obj !== "object" || Array.isArray(obj)) return {spec: spec, error: "the spec must be a JSON object"};
        if (Array.isArray(obj.reroll)) spec.reroll = obj.reroll.map(parseRegion).filter(Boolean);
        if (Array.isArray(obj.layout)) spec.layout = obj.layout.map(parseLayoutBox).filter(Boolean);
        if (VARY.indexOf(obj.vary) >= 0) spec.vary = obj.vary;
        if (METHODS.indexOf(obj.method) >= 0) spec.method = obj.method;
        if (LAYERS.indexOf(obj.layers) >= 0) spec.layers = obj.layers;
        spec.rounds = clamp(Math.trunc(num(obj.rounds, 1)), 1, MAX_ROUNDS);
        spec.hires = obj.hires === true;
        spec.heatmaps = obj.heatmaps === true;
        return {spec: spec, error: null};
    }

    // spec -> compact JSON with only known keys; defaults are left out
    function serialize(spec) {
        var out = {};
        if (spec.reroll.some(function(r) {
            return r.mask || r.box;
        })) {
            out.reroll = spec.reroll.filter(function(r) {
                return r.mask || r.box;
            }).map(function(r) {
                var o = {};
                if (r.mask) o.mask = r.mask;
                else o.box = r.box.map(round4);
                o.seed = Math.trunc(r.seed);
                o.strength = round4(r.strength);
                o.feather = round4(r.feather);
                return o;
            });
        }
        if (spec.vary !== DEFAULTS.vary) out.vary = spec.vary;
        if (spec.layout.length) {
            out.layout = spec.layout.map(function(l) {
                return {phrase: l.phrase, box: l.box.map(round4)};
            });
        }
        if (spec.rounds !== DEFAULTS.rounds) out.rounds = spec.rounds;
        if (spec.hires) out.hires = true;
        if (spec.method !== DEFAULTS.method) out.method = spec.method;
        if (spec.layers !== DEFAULTS.layers) out.layers = spec.layers;
        if (spec.heatmaps) out.heatmaps = true;
        return JSON.stringify(out);
    }

    // the value of key `key` in one A1111 infotext (quoted with json.dumps when it holds , : or ")
    function infotextValue(infotext, key) {
        var re = new RegExp("(?:^|[,\\n]\\s*)" + key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + ":\\s*");
        var m = re.exec(infotext || "");
        if (!m) return null;
        var rest = infotext.slice(m.index + m[0].length);
        if (rest[0] === '"') {
            var end = 1;
            while (end < rest.length && rest[end] !== '"') end += rest[end] === "\\" ? 2 : 1;
            try {
                return JSON.parse(rest.slice(0, end + 1));
            } catch (e) {
                return null;
            }
        }
        if (rest[0] === "{") { // unquoted JSON: take the balanced object
            var depth = 0, inStr = false;
            for (var i = 0; i < rest.length; i++) {
                var c = rest[i];
                if (inStr) {
                    if (c === "\\") i++;
                    else if (c === '"') inStr = false;
                } else if (c === '"') inStr = true;
                else if (c === "{") depth++;
                else if (c === "}" && --depth === 0) return rest.slice(0, i + 1);
            }
            return null;
        }
        var comma = rest.indexOf(",");
        return (comma < 0 ? rest : rest.slice(0, comma)).trim();
    }

    // phrase occurs in the prompt (case-insensitive, whitespace-insensitive)
    function phraseInPrompt(phrase, prompt) {
        var norm = function(s) {
            return (s || "").toLowerCase().replace(/\s+/g, " ").trim();
        };
        var p = norm(phrase);
        return p.length > 0 && norm(prompt).indexOf(p) >= 0;
    }

    // candidate phrases from a prompt: its comma-separated parts and their words, without weights or <lora:...>
    var STOP = /^(a|an|the|and|of|with|in|on|at|to|by|is|for|BREAK)$/i;

    function promptWords(prompt) {
        var clean = (prompt || "").replace(/<[^>]*>/g, " ").replace(/:\s*-?[\d.]+/g, " ").replace(/[()[\]{}|]/g, " ");
        var seen = {}, out = [];
        var add = function(w) {
            w = w.replace(/\s+/g, " ").trim();
            var k = w.toLowerCase();
            if (w.length < 2 || seen[k] || STOP.test(w)) return;
            seen[k] = true;
            out.push(w);
        };
        clean.split(/[,\n]/).forEach(function(part) {
            var words = part.trim().split(/\s+/).filter(Boolean);
            words.forEach(add);
            // adjective + noun pairs ("red car") are common layout phrases
            for (var i = 0; i + 1 < words.length; i++) {
                if (!STOP.test(words[i]) && !STOP.test(words[i + 1])) add(words[i] + " " + words[i + 1]);
            }
        });
        return out;
    }

    ns.spec = {
        DEFAULTS: DEFAULTS, MAX_SEED: MAX_SEED, MAX_ROUNDS: MAX_ROUNDS, empty: empty, parse: parse, serialize: serialize, normBox: normBox, clamp: clamp,
        infotextValue: infotextValue, phraseInPrompt: phraseInPrompt, promptWords: promptWords,
    };
})(window.InitEdit = window.InitEdit || {});
