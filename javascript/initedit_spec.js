// InitEdit: the spec JSON as the editor sees it. Every fact about the spec (keys, limits, choices, defaults,
// which fields are always written) comes from the server: lib_initedit/spec.py, rendered by
// lib_initedit/webui/ui.py into the root's `data-spec-facts`. `codec(facts)` turns them into a lenient parser
// and a serialiser that writes what `InitEditSpec.to_dict()` writes. The Python parser stays the authority.
(function(ns) {
    "use strict";

    function round4(v) {
        return Math.round(v * 10000) / 10000;
    }

    function num(v, fallback) {
        var n = typeof v === "number" ? v : parseFloat(v);
        return isFinite(n) ? n : fallback;
    }

    function stripDataUrl(s) {
        var i = s.indexOf("base64,");
        return s.startsWith("data:") && i >= 0 ? s.slice(i + 7) : s;
    }

    function codec(facts) {
        if (!facts || !Array.isArray(facts.fields) || !facts.region || !Array.isArray(facts.palette) || !facts.palette.length) {
            throw new Error("InitEdit: no spec facts from the server");
        }
        var clamp = ns.geometry.clamp;
        var R = facts.region, FIELDS = facts.fields, PINNED = facts.pinned || {};
        var DEFAULTS = {};
        FIELDS.forEach(function(f) {
            DEFAULTS[f.name] = f.default;
        });
        var byName = {};
        FIELDS.forEach(function(f) {
            byName[f.name] = f;
        });

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

        function regionField(name, v) {
            var lim = R[name], x = num(v, lim.default);
            return clamp(name === "seed" ? Math.trunc(x) : x, lim.min, lim.max);
        }

        function parseRegion(r) {
            if (!r || typeof r !== "object") return null;
            var out = {seed: regionField("seed", r.seed), strength: regionField("strength", r.strength),
                feather: regionField("feather", r.feather)};
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

        // a top-level field's value as the parser would take it, or its default
        function field(name, v) {
            var f = byName[name];
            if (v === undefined || v === null) return f.default;
            if (f.type === "choice") return f.choices.indexOf(v) >= 0 ? v : f.default;
            if (f.type === "bool") return v === true;
            var x = num(v, f.default);
            return clamp(f.type === "int" ? Math.trunc(x) : x, f.min, f.max);
        }

        function empty() {
            var spec = {reroll: [], layout: []};
            FIELDS.forEach(function(f) {
                spec[f.name] = f.default;
            });
            return spec;
        }

        // a new region as the editor draws it (the server's defaults, a soft edge)
        function newRegion(extra) {
            var r = {seed: R.seed.default, strength: R.strength.default, feather: clamp(0.05, R.feather.min, R.feather.max)};
            Object.keys(extra || {}).forEach(function(k) {
                r[k] = extra[k];
            });
            return r;
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
            FIELDS.forEach(function(f) {
                spec[f.name] = field(f.name, obj[f.name]);
            });
            return {spec: spec, error: null};
        }

        // spec -> compact JSON, as InitEditSpec.to_dict(): lists when not empty, then every field that differs
        // from its default or is pinned to a list that is written (facts.pinned: field -> its lists)
        function toDict(spec) {
            var out = {};
            var regions = spec.reroll.filter(function(r) {
                return r.mask || r.box;
            });
            if (regions.length) {
                out.reroll = regions.map(function(r) {
                    var o = {};
                    if (r.mask) o.mask = r.mask;
                    else o.box = r.box.map(round4);
                    o.seed = Math.trunc(r.seed);
                    o.strength = round4(r.strength);
                    o.feather = round4(r.feather);
                    return o;
                });
            }
            if (spec.layout.length) {
                out.layout = spec.layout.map(function(l) {
                    return {phrase: l.phrase, box: l.box.map(round4)};
                });
            }
            FIELDS.forEach(function(f) {
                var v = field(f.name, spec[f.name]), pinned = (PINNED[f.name] || []).some(function(section) {
                    return out[section];
                });
                if (f.type === "float") v = round4(v);
                if (v !== f.default || pinned) out[f.name] = v;
            });
            return out;
        }

        function serialize(spec) {
            return JSON.stringify(toDict(spec));
        }

        return {
            facts: facts, keys: facts.keys, fields: FIELDS, field: field, DEFAULTS: DEFAULTS, region: R,
            MAX_SEED: facts.max_seed, RANDOM_SEED_LIMIT: facts.random_seed_limit,
            MAX_REGIONS: facts.max_regions, MAX_BOXES: facts.max_boxes,
            PALETTE: facts.palette, // box k's colour on the canvas is the heatmaps' colour of box k
            limits: function(name) {
                return byName[name] || R[name];
            },
            empty: empty, newRegion: newRegion, parse: parse, toDict: toDict, serialize: serialize, normBox: normBox,
            infotextValue: infotextValue, phraseInPrompt: phraseInPrompt, promptWords: promptWords,
        };
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

    ns.spec = {codec: codec, infotextValue: infotextValue, phraseInPrompt: phraseInPrompt, promptWords: promptWords};
})(window.InitEdit = window.InitEdit || {});
