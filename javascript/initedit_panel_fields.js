// InitEdit: the fields of the selected region (seed, strength, feather) or box (phrase, with the prompt's
// words and a live check), and the ♻️ seeds of the last generation. Methods of the Panel (initedit_panel.js).
(function(ns) {
    "use strict";

    var proto = ns.panelMethods = ns.panelMethods || {}; // Panel.prototype (initedit_panel.js)
    var dom = ns.dom = ns.dom || {}; // initedit_dom.js: filled when it loads, used at call time

    proto._rerollFields = function(it) {
        var ed = this.editor, self = this, i = ed.sel, S = this.S, G = this.G, R = S.region;
        var seed = dom.h("input", {type: "number", step: 1, min: R.seed.min, max: R.seed.max, value: it.seed, class: "initedit-seed", "data-field": "seed", onchange: function() {
            var v = Math.trunc(parseFloat(seed.value));
            v = isFinite(v) ? self.G.clamp(v, R.seed.min, R.seed.max) : R.seed.default;
            seed.value = v;
            ed.update({seed: v});
        }});
        seed.addEventListener("input", function() { // live, so a Generate click right after typing has it
            var v = Number(seed.value);
            if (seed.value.trim() !== "" && Number.isInteger(v) && v >= R.seed.min && v <= R.seed.max) ed.update({seed: v});
        });
        var status = dom.h("span", {class: "initedit-hint"});
        return dom.h("div", {class: "initedit-fields"}, [
            dom.h("div", {class: "initedit-row"}, [
                dom.h("label", {class: "initedit-field"}, [dom.h("span", {text: "Region " + (i + 1) + " seed"}), seed]),
                dom.button("🎲", "Random seed each generation (-1)", function() {
                    seed.value = R.seed.default;
                    ed.update({seed: R.seed.default});
                }, "initedit-seed-random"),
                dom.button("♻️", "Reuse the seed this region had in the last generation", function() {
                    var s = self.hooks.lastSeed(i);
                    status.textContent = s === null ? "No InitEdit seed for this region in the last generation." : "";
                    if (s === null) return;
                    seed.value = s;
                    ed.update({seed: s});
                }, "initedit-seed-reuse"),
                dom.h("span", {class: "initedit-spacer"}),
                dom.button("🗑️", "Delete this region (Delete key)", function() {
                    ed.remove();
                }, "initedit-delete"),
            ]),
            status,
            dom.slider(G.clamp, "Strength", it.strength, R.strength.min, R.strength.max, 0.05, function(v) {
                ed.update({strength: v});
            }, "strength"),
            dom.slider(G.clamp, "Feather", it.feather, R.feather.min, R.feather.max, 0.01, function(v) {
                ed.update({feather: v});
            }, "feather"),
        ]);
    };

    proto._layoutFields = function(it) {
        var ed = this.editor, self = this, words = this.S.promptWords(this.hooks.promptText());
        var listId = "initedit-words-" + Math.random().toString(36).slice(2, 8);
        var phrase = dom.h("input", {type: "text", value: it.phrase, list: listId, placeholder: "a phrase of the prompt", class: "initedit-phrase", "data-field": "phrase"});
        phrase.addEventListener("input", function() {
            ed.update({phrase: phrase.value});
            self._checkPhrase();
        });
        this.phraseWarn = dom.h("div", {class: "initedit-warn initedit-phrase-warn", hidden: true});
        this.phraseInput = phrase;
        var chips = dom.h("div", {class: "initedit-words"}, words.slice(0, 30).map(function(w) {
            return dom.h("button", {type: "button", class: "initedit-word", text: w, onclick: function() {
                phrase.value = w;
                ed.update({phrase: w});
                self._checkPhrase();
            }});
        }));
        var node = dom.h("div", {class: "initedit-fields"}, [
            dom.h("div", {class: "initedit-row"}, [
                dom.h("label", {class: "initedit-field initedit-grow"}, [dom.h("span", {text: "Box " + (ed.sel + 1) + " phrase"}), phrase]),
                dom.button("🗑️", "Delete this box (Delete key)", function() {
                    ed.remove();
                }, "initedit-delete"),
            ]),
            dom.h("datalist", {id: listId}, words.map(function(w) {
                return dom.h("option", {value: w});
            })),
            this.phraseWarn,
            words.length ? chips : null,
        ]);
        setTimeout(function() {
            self._checkPhrase();
        }, 0);
        return node;
    };

    // ♻️ All: every region takes the seed it had in the last generation (where the infotext has one)
    proto.reuseAllSeeds = function() {
        var ed = this.editor, hk = this.hooks, changed = 0;
        ed.spec.reroll.forEach(function(r, i) {
            var s = hk.lastSeed(i);
            if (s !== null && r.seed !== s) {
                r.seed = s;
                changed++;
            }
        });
        if (changed) ed.commit();
        this.rerollItem.dataset.index = ""; // rebuild the fields even if one has focus
        this.refresh();
    };

    // live check of the selected box's phrase against the prompt
    proto._checkPhrase = function() {
        var ed = this.editor, it = ed.tab === "layout" ? ed.selected() : null;
        if (!it || !this.phraseWarn) return;
        var prompt = this.hooks.promptText(), ok = this.S.phraseInPrompt(it.phrase, prompt);
        this.phraseWarn.hidden = ok;
        this.phraseWarn.textContent = it.phrase ? "⚠️ \"" + it.phrase + "\" does not occur in the prompt." : "⚠️ Pick a phrase of the prompt for this box.";
    };
})(window.InitEdit = window.InitEdit || {});
