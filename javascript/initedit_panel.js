// InitEdit: the controls around the canvas (toolbar, Reroll and Layout tabs, per-region fields, warnings).
// Every control edits the Editor, which writes the spec textbox; the panel holds no state of its own.
// Limits and choices come from the spec codec of the server's facts (`mods.spec`), given at mount time.
(function(ns) {
    "use strict";

    function h(tag, attrs, children) {
        var el = document.createElement(tag);
        Object.keys(attrs || {}).forEach(function(k) {
            if (k === "class") el.className = attrs[k];
            else if (k === "text") el.textContent = attrs[k];
            else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), attrs[k]);
            else if (attrs[k] !== false && attrs[k] !== null && attrs[k] !== undefined) el.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
        });
        (children || []).forEach(function(c) {
            if (c) el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
        });
        return el;
    }

    function button(text, title, onclick, cls) {
        return h("button", {type: "button", class: "initedit-btn " + (cls || ""), title: title, onclick: onclick, text: text});
    }

    // a labelled range + number pair; `commit(value)` on every change; `.set(v)` shows a value without committing
    function slider(clamp, label, value, min, max, step, commit, name, title) {
        var range = h("input", {type: "range", min: min, max: max, step: step, value: value, "data-field": name});
        var box = h("input", {type: "number", min: min, max: max, step: step, value: value, class: "initedit-num", "data-field": name + "-num"});
        range.addEventListener("input", function() {
            box.value = range.value;
            commit(parseFloat(range.value));
        });
        box.addEventListener("input", function() { // live while typing, when it is a number in range
            var v = parseFloat(box.value);
            if (isFinite(v) && v >= min && v <= max) {
                range.value = v;
                commit(v);
            }
        });
        box.addEventListener("change", function() {
            var v = clamp(parseFloat(box.value) || 0, min, max);
            box.value = range.value = v;
            commit(v);
        });
        var el = h("label", {class: "initedit-field initedit-slider", title: title || null, "data-slider": name},
            [h("span", {text: label}), range, box]);
        el.set = function(v) { // what the user is typing ("0.50", "0.") stays as long as it means v
            if (parseFloat(range.value) !== v) range.value = v;
            if (parseFloat(box.value) !== v) box.value = v;
        };
        return el;
    }

    // hooks: {loadLastImage, openFile, blank, toggleJson, lastSeed(i) -> int|null, fixSeed, promptText}
    // mods: {spec: the codec of the server's facts, geometry}
    function Panel(root, hooks, mods) {
        this.root = root;
        this.hooks = hooks;
        this.S = mods.spec;
        this.G = mods.geometry;
        this.editor = null;
        this._build();
    }

    Panel.prototype._build = function() {
        var self = this, hk = this.hooks, S = this.S, G = this.G;
        var option = function(key) {
            return function(v) {
                self.editor.setOption(key, v);
            };
        };
        this.canvas = h("canvas", {class: "initedit-canvas", tabindex: "0", "aria-label": "InitEdit box editor"});
        this.wrap = h("div", {class: "initedit-canvas-wrap", title: "Drag to draw a box; drag a box to move it, its edges or corners to resize; Delete removes; arrows nudge (Shift ×10, Alt resizes). Drop an image here for the background."}, [this.canvas]);
        this.tabs = h("div", {class: "initedit-tabs", role: "tablist"}, ["reroll", "layout"].map(function(t) {
            return h("button", {type: "button", role: "tab", class: "initedit-tab", "data-tab": t, text: t === "reroll" ? "Reroll" : "Layout", onclick: function() {
                self.setTab(t);
            }});
        }));
        var toolbar = h("div", {class: "initedit-toolbar"}, [
            this.tabs,
            h("span", {class: "initedit-spacer"}),
            button("🖼️ Last image", "Use the last txt2img output as the background", hk.loadLastImage, "initedit-bg-last"),
            button("📂", "Load a background image (or drop one on the canvas)", hk.openFile, "initedit-bg-file"),
            button("⬜", "Blank background of the current width × height", hk.blank, "initedit-bg-blank"),
            button("↶", "Undo (Ctrl+Z on the canvas)", function() {
                self.editor.undo();
            }, "initedit-undo"),
            button("{ }", "Show the spec JSON (what the API and infotext use)", hk.toggleJson, "initedit-json-toggle"),
        ]);

        // Reroll tab
        this.seedWarn = h("div", {class: "initedit-warn initedit-seed-warn", hidden: true}, [
            h("span", {text: "⚠️ The main seed is -1: a reroll keeps the rest of the picture only with a fixed seed. "}),
            button("Use a fixed seed", "Reuse the last seed (or pick one)", hk.fixSeed, "initedit-fix-seed"),
        ]);
        this.toolBox = button("▭ Box", "Draw boxes", function() {
            self.setTool("box");
        }, "initedit-tool-box");
        this.toolBrush = button("🖌️ Mask", "Paint a mask (right button or Alt erases)", function() {
            self.setTool("brush");
        }, "initedit-tool-brush");
        this.brushSize = slider(G.clamp, "Brush", 0.04, 0.005, 0.2, 0.005, function(v) {
            self.editor.brush = v;
        }, "brush");
        this.eraseBox = h("input", {type: "checkbox", "data-field": "erase", onchange: function(e) {
            self.editor.erase = e.target.checked;
        }});
        this.brushRow = h("div", {class: "initedit-row initedit-brush-row", hidden: true}, [this.brushSize, h("label", {class: "initedit-check"}, [this.eraseBox, "Erase"])]);
        this.vary = h("select", {"data-field": "vary", onchange: function(e) {
            self.editor.setOption("vary", e.target.value);
        }}, [h("option", {value: "seed", text: "the main seed (each image differs)"}), h("option", {value: "reroll", text: "only the regions' seeds (the rest stays)"})]);
        this.rerollList = h("div", {class: "initedit-list"});
        this.rerollItem = h("div", {class: "initedit-item"});
        var keep = S.limits("keep");
        this.keep = slider(G.clamp, "Keep the rest", S.DEFAULTS.keep, keep.min, keep.max, 0.05, option("keep"), "keep",
            "Fraction of the steps during which everything outside the regions (beyond the band) follows the image without the reroll " +
            "(0: only the initial noise is edited; 1: the outside is the image without the reroll to the end)");
        var band = S.limits("keep_band");
        this.keepBand = slider(G.clamp, "Band", S.DEFAULTS.keep_band, band.min, band.max, 0.01, option("keep_band"), "keep_band",
            "Width of the band around the regions (fraction of the image's shorter side) that is released gradually, " +
            "nearest first, so the region blends into the rest without a seam; beyond it the rest follows for all the kept steps " +
            "(0: no band, a hard edge at keep 1)");
        this.rerollBody = h("div", {class: "initedit-tab-body", "data-tab": "reroll"}, [
            this.seedWarn,
            h("div", {class: "initedit-row"}, [this.toolBox, this.toolBrush, h("span", {class: "initedit-spacer"}), button("♻️ All", "Reuse every region's seed from the last generation (the image the gallery shows)", function() {
                self.reuseAllSeeds();
            }, "initedit-seed-reuse-all"), button("Clear", "Remove all regions of this tab", function() {
                self.editor.clearAll();
            }, "initedit-clear")]),
            this.brushRow, this.rerollList, this.rerollItem,
            h("div", {class: "initedit-row initedit-keep-row"}, [this.keep, this.keepBand]),
            h("label", {class: "initedit-field"}, [h("span", {text: "Batch varies"}), this.vary]),
        ]);

        // Layout tab
        this.layoutList = h("div", {class: "initedit-list"});
        this.layoutItem = h("div", {class: "initedit-item"});
        var rounds = S.limits("rounds");
        this.rounds = h("input", {type: "number", min: rounds.min, max: rounds.max, step: 1, value: S.DEFAULTS.rounds, class: "initedit-num", "data-field": "rounds", onchange: function(e) {
            var v = G.clamp(Math.round(parseFloat(e.target.value) || rounds.min), rounds.min, rounds.max);
            e.target.value = v;
            self.editor.setOption("rounds", v);
        }});
        var candidates = S.limits("candidates");
        this.candidates = h("input", {type: "number", min: candidates.min, max: candidates.max, step: 1, value: S.DEFAULTS.candidates, class: "initedit-num", "data-field": "candidates",
            title: "Probe this many noises (the seed's and derived ones) and fill each box from the blocks that want its phrase most (each one more probe)", onchange: function(e) {
            var v = G.clamp(Math.round(parseFloat(e.target.value) || candidates.min), candidates.min, candidates.max);
            e.target.value = v;
            self.editor.setOption("candidates", v);
        }});
        this.method = h("select", {"data-field": "method", onchange: function(e) {
            self.editor.setOption("method", e.target.value);
        }}, [h("option", {value: "swap", text: "swap blocks"}), h("option", {value: "rebuild", text: "rebuild"})]);
        this.layers = h("select", {"data-field": "layers", title: "Which cross-attention layers the probe reads", onchange: function(e) {
            self.editor.setOption("layers", e.target.value);
        }}, [h("option", {value: "level", text: "all layers of the level"}), h("option", {value: "paper", text: "one layer (paper)"})]);
        this.heatmaps = h("input", {type: "checkbox", "data-field": "heatmaps", onchange: function(e) {
            self.editor.setOption("heatmaps", e.target.checked);
        }});
        var guidance = S.limits("guidance"), gsteps = S.limits("guidance_steps");
        this.guidance = slider(G.clamp, "Guidance", S.DEFAULTS.guidance, guidance.min, guidance.max, 0.5, option("guidance"), "guidance",
            "During sampling, pull each phrase's attention into its box: how strongly (0: off, the noise edit only)");
        this.guidanceSteps = slider(G.clamp, "Guided steps", S.DEFAULTS.guidance_steps, gsteps.min, gsteps.max, 0.05, option("guidance_steps"),
            "guidance_steps", "Fraction of the steps, from the first, that are guided");
        this.layoutBody = h("div", {class: "initedit-tab-body", "data-tab": "layout", hidden: true}, [
            h("div", {class: "initedit-row initedit-hint"}, [h("span", {text: "Draw a box per object, then pick its phrase from the prompt."}), h("span", {class: "initedit-spacer"}), button("Clear", "Remove all boxes of this tab", function() {
                self.editor.clearAll();
            }, "initedit-clear")]),
            this.layoutList, this.layoutItem,
            h("div", {class: "initedit-row"}, [
                h("label", {class: "initedit-field"}, [h("span", {text: "Rounds"}), this.rounds]),
                h("label", {class: "initedit-field"}, [h("span", {text: "Candidates"}), this.candidates]),
                h("label", {class: "initedit-field"}, [h("span", {text: "Method"}), this.method]),
                h("label", {class: "initedit-field"}, [h("span", {text: "Layers"}), this.layers]),
                h("label", {class: "initedit-check"}, [this.heatmaps, "Show probe heatmaps"]),
            ]),
            h("div", {class: "initedit-row initedit-guidance-row"}, [this.guidance, this.guidanceSteps]),
        ]);

        this.hires = h("input", {type: "checkbox", "data-field": "hires", onchange: function(e) {
            self.editor.setOption("hires", e.target.checked);
        }});
        this.error = h("div", {class: "initedit-warn initedit-error", hidden: true});
        this.invalid = h("div", {class: "initedit-warn initedit-invalid", hidden: true});
        this.note = h("div", {class: "initedit-note initedit-last-note", hidden: true});
        this.root.textContent = "";
        this.root.appendChild(h("div", {class: "initedit-editor"}, [
            toolbar, this.wrap, this.rerollBody, this.layoutBody,
            h("div", {class: "initedit-row"}, [h("label", {class: "initedit-check"}, [this.hires, "Also edit the hires-fix pass"])]),
            this.error, this.invalid, this.note,
        ]));
    };

    Panel.prototype.attach = function(editor) {
        var self = this;
        this.editor = editor;
        editor.onEditRequest = function() { // double-click on a box: its phrase (Layout) or seed (Reroll) field
            var f = (editor.tab === "layout" ? self.layoutItem : self.rerollItem).querySelector(".initedit-phrase, .initedit-seed");
            if (f) {
                f.focus();
                f.select();
            }
        };
        this.setTab("reroll");
        this.setTool("box");
        this.refresh();
    };

    Panel.prototype.setTab = function(t) {
        this.editor.setTab(t);
        Array.prototype.forEach.call(this.tabs.children, function(b) {
            b.classList.toggle("selected", b.dataset.tab === t);
            b.setAttribute("aria-selected", b.dataset.tab === t);
        });
        this.rerollBody.hidden = t !== "reroll";
        this.layoutBody.hidden = t !== "layout";
        this.root.dataset.activeTab = t;
        this.refresh();
    };

    Panel.prototype.setTool = function(tool) {
        this.editor.tool = tool;
        this.toolBox.classList.toggle("selected", tool === "box");
        this.toolBrush.classList.toggle("selected", tool === "brush");
        this.brushRow.hidden = tool !== "brush";
        this.editor.redraw();
    };

    Panel.prototype.setError = function(msg) {
        var text = msg ? "⚠️ The spec JSON is not usable: " + msg : "";
        if (this.error.textContent === text) return; // no DOM churn: the WebUI observes the page
        this.error.hidden = !msg;
        this.error.textContent = text;
    };

    // what the server's parser says of the spec as it stands (before Generate): null when it is valid
    Panel.prototype.setInvalid = function(msg) {
        var text = msg ? "⚠️ InitEdit would not be applied: " + msg : "";
        if (this.invalid.textContent === text) return;
        this.invalid.hidden = !msg;
        this.invalid.textContent = text;
    };

    // what the server said about the image the gallery shows ("InitEdit note" in its infotext)
    Panel.prototype.setNote = function(text, isError) {
        var t = !text ? "" : isError ? "⚠️ Last generation: InitEdit was not applied: " + text : "ℹ️ Last generation: " + text;
        if (this.note.textContent === t) return;
        this.note.hidden = !text;
        this.note.textContent = t;
        this.note.classList.toggle("initedit-warn", !!isError);
    };

    Panel.prototype.setSeedWarning = function(on) {
        if (this.seedWarn.hidden === !on) return;
        this.seedWarn.hidden = !on;
    };

    // rebuild the lists and the selected item's fields (skipped while the user types in one of them)
    Panel.prototype.refresh = function() {
        var ed = this.editor;
        if (!ed) return;
        var sp = ed.spec;
        this.vary.value = sp.vary;
        this.rounds.value = sp.rounds;
        this.candidates.value = sp.candidates;
        this.method.value = sp.method;
        this.layers.value = sp.layers;
        this.heatmaps.checked = sp.heatmaps;
        this.hires.checked = sp.hires;
        this.keep.set(sp.keep);
        this.keepBand.set(sp.keep_band);
        this.guidance.set(sp.guidance);
        this.guidanceSteps.set(sp.guidance_steps);
        this._list(this.rerollList, "reroll");
        this._list(this.layoutList, "layout");
        var holder = ed.tab === "layout" ? this.layoutItem : this.rerollItem;
        var other = ed.tab === "layout" ? this.rerollItem : this.layoutItem;
        other.textContent = "";
        if (holder.contains(document.activeElement) && holder.dataset.index === String(ed.sel)) {
            this._checkPhrase();
            return;
        }
        holder.textContent = "";
        holder.dataset.index = String(ed.sel);
        var it = ed.selected();
        if (!it) {
            holder.appendChild(h("div", {class: "initedit-hint", text: ed.items().length ? "Select a region to edit it." :
                (ed.tab === "layout" ? "No boxes yet: drag on the canvas to draw one." : "No regions yet: drag a box (or paint a mask) over the part to reroll.")}));
            return;
        }
        holder.appendChild(ed.tab === "layout" ? this._layoutFields(it) : this._rerollFields(it));
    };

    Panel.prototype._list = function(el, tab) {
        var ed = this.editor, items = ed.items(tab);
        el.textContent = "";
        items.forEach(function(it, i) {
            var col = ed.color(i);
            var chip = h("button", {type: "button", class: "initedit-chip" + (ed.tab === tab && ed.sel === i ? " selected" : ""), "data-index": i, onclick: function() {
                ed.select(i);
            }}, [h("span", {class: "initedit-swatch", style: "background:" + col}), ed.label(tab, i) + (it.mask !== undefined && !it.box ? " (mask)" : "")]);
            el.appendChild(chip);
        });
        el.hidden = items.length === 0;
    };

    Panel.prototype._rerollFields = function(it) {
        var ed = this.editor, self = this, i = ed.sel, S = this.S, G = this.G, R = S.region;
        var seed = h("input", {type: "number", step: 1, min: R.seed.min, max: R.seed.max, value: it.seed, class: "initedit-seed", "data-field": "seed", onchange: function() {
            var v = Math.trunc(parseFloat(seed.value));
            v = isFinite(v) ? self.G.clamp(v, R.seed.min, R.seed.max) : R.seed.default;
            seed.value = v;
            ed.update({seed: v});
        }});
        seed.addEventListener("input", function() { // live, so a Generate click right after typing has it
            var v = Number(seed.value);
            if (seed.value.trim() !== "" && Number.isInteger(v) && v >= R.seed.min && v <= R.seed.max) ed.update({seed: v});
        });
        var status = h("span", {class: "initedit-hint"});
        return h("div", {class: "initedit-fields"}, [
            h("div", {class: "initedit-row"}, [
                h("label", {class: "initedit-field"}, [h("span", {text: "Region " + (i + 1) + " seed"}), seed]),
                button("🎲", "Random seed each generation (-1)", function() {
                    seed.value = R.seed.default;
                    ed.update({seed: R.seed.default});
                }, "initedit-seed-random"),
                button("♻️", "Reuse the seed this region had in the last generation", function() {
                    var s = self.hooks.lastSeed(i);
                    status.textContent = s === null ? "No InitEdit seed for this region in the last generation." : "";
                    if (s === null) return;
                    seed.value = s;
                    ed.update({seed: s});
                }, "initedit-seed-reuse"),
                h("span", {class: "initedit-spacer"}),
                button("🗑️", "Delete this region (Delete key)", function() {
                    ed.remove();
                }, "initedit-delete"),
            ]),
            status,
            slider(G.clamp, "Strength", it.strength, R.strength.min, R.strength.max, 0.05, function(v) {
                ed.update({strength: v});
            }, "strength"),
            slider(G.clamp, "Feather", it.feather, R.feather.min, R.feather.max, 0.01, function(v) {
                ed.update({feather: v});
            }, "feather"),
        ]);
    };

    Panel.prototype._layoutFields = function(it) {
        var ed = this.editor, self = this, words = this.S.promptWords(this.hooks.promptText());
        var listId = "initedit-words-" + Math.random().toString(36).slice(2, 8);
        var phrase = h("input", {type: "text", value: it.phrase, list: listId, placeholder: "a phrase of the prompt", class: "initedit-phrase", "data-field": "phrase"});
        phrase.addEventListener("input", function() {
            ed.update({phrase: phrase.value});
            self._checkPhrase();
        });
        this.phraseWarn = h("div", {class: "initedit-warn initedit-phrase-warn", hidden: true});
        this.phraseInput = phrase;
        var chips = h("div", {class: "initedit-words"}, words.slice(0, 30).map(function(w) {
            return h("button", {type: "button", class: "initedit-word", text: w, onclick: function() {
                phrase.value = w;
                ed.update({phrase: w});
                self._checkPhrase();
            }});
        }));
        var node = h("div", {class: "initedit-fields"}, [
            h("div", {class: "initedit-row"}, [
                h("label", {class: "initedit-field initedit-grow"}, [h("span", {text: "Box " + (ed.sel + 1) + " phrase"}), phrase]),
                button("🗑️", "Delete this box (Delete key)", function() {
                    ed.remove();
                }, "initedit-delete"),
            ]),
            h("datalist", {id: listId}, words.map(function(w) {
                return h("option", {value: w});
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
    Panel.prototype.reuseAllSeeds = function() {
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
    Panel.prototype._checkPhrase = function() {
        var ed = this.editor, it = ed.tab === "layout" ? ed.selected() : null;
        if (!it || !this.phraseWarn) return;
        var prompt = this.hooks.promptText(), ok = this.S.phraseInPrompt(it.phrase, prompt);
        this.phraseWarn.hidden = ok;
        this.phraseWarn.textContent = it.phrase ? "⚠️ \"" + it.phrase + "\" does not occur in the prompt." : "⚠️ Pick a phrase of the prompt for this box.";
    };

    // the prompt changed: re-check phrases and offer its words again
    Panel.prototype.promptChanged = function() {
        var ed = this.editor;
        this._list(this.layoutList, "layout");
        if (ed.tab === "layout" && !(this.layoutItem.contains(document.activeElement))) this.refresh();
        else this._checkPhrase();
        ed.redraw();
    };

    ns.Panel = Panel;
})(window.InitEdit = window.InitEdit || {});
