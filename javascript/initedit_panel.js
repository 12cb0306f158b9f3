// InitEdit: the controls around the canvas (toolbar, Reroll and Layout tabs, per-region fields, warnings).
// Every control edits the Editor, which writes the spec textbox; the panel holds no state of its own.
// Limits and choices come from the spec codec of the server's facts (`mods.spec`), given at mount time.
// The tabs' controls are built in initedit_panel_tabs.js, the selected item's fields in
// initedit_panel_fields.js: methods of the same Panel prototype, whichever file loads first.
(function(ns) {
    "use strict";

    // Panel.prototype, shared with initedit_panel_tabs.js and initedit_panel_fields.js: whichever file loads
    // first makes it, so the order the WebUI loads them in does not matter
    var proto = ns.panelMethods = ns.panelMethods || {};
    var dom = ns.dom = ns.dom || {}; // initedit_dom.js: filled when it loads, used at call time

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

    Panel.prototype = proto;
    proto.constructor = Panel;

    proto._build = function() {
        var self = this, hk = this.hooks;
        this.canvas = dom.h("canvas", {class: "initedit-canvas", tabindex: "0", "aria-label": "InitEdit box editor"});
        this.wrap = dom.h("div", {class: "initedit-canvas-wrap", title: "Drag to draw a box; drag a box to move it, its edges or corners to resize; Delete removes; arrows nudge (Shift ×10, Alt resizes). Drop an image here for the background."}, [this.canvas]);
        this.tabs = dom.h("div", {class: "initedit-tabs", role: "tablist"}, ["reroll", "layout"].map(function(t) {
            return dom.h("button", {type: "button", role: "tab", class: "initedit-tab", "data-tab": t, text: t === "reroll" ? "Reroll" : "Layout", onclick: function() {
                self.setTab(t);
            }});
        }));
        var toolbar = dom.h("div", {class: "initedit-toolbar"}, [
            this.tabs,
            dom.h("span", {class: "initedit-spacer"}),
            dom.button("🖼️ Last image", "Use the last txt2img output as the background", hk.loadLastImage, "initedit-bg-last"),
            dom.button("📂", "Load a background image (or drop one on the canvas)", hk.openFile, "initedit-bg-file"),
            dom.button("⬜", "Blank background of the current width × height", hk.blank, "initedit-bg-blank"),
            dom.button("↶", "Undo (Ctrl+Z on the canvas)", function() {
                self.editor.undo();
            }, "initedit-undo"),
            dom.button("{ }", "Show the spec JSON (what the API and infotext use)", hk.toggleJson, "initedit-json-toggle"),
        ]);
        this._buildReroll();
        this._buildLayout();

        this.hires = dom.h("input", {type: "checkbox", "data-field": "hires", onchange: function(e) {
            self.editor.setOption("hires", e.target.checked);
        }});
        this.error = dom.h("div", {class: "initedit-warn initedit-error", hidden: true});
        this.invalid = dom.h("div", {class: "initedit-warn initedit-invalid", hidden: true});
        this.note = dom.h("div", {class: "initedit-note initedit-last-note", hidden: true});
        this.root.textContent = "";
        this.root.appendChild(dom.h("div", {class: "initedit-editor"}, [
            toolbar, this.wrap, this.rerollBody, this.layoutBody,
            dom.h("div", {class: "initedit-row"}, [dom.h("label", {class: "initedit-check"}, [this.hires, "Also edit the hires-fix pass"])]),
            this.error, this.invalid, this.note,
        ]));
    };

    // a control's change handler that sets the spec's top-level option `key`
    proto._option = function(key) {
        var self = this;
        return function(v) {
            self.editor.setOption(key, v);
        };
    };

    proto.attach = function(editor) {
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

    proto.setTab = function(t) {
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

    proto.setTool = function(tool) {
        this.editor.tool = tool;
        this.toolBox.classList.toggle("selected", tool === "box");
        this.toolBrush.classList.toggle("selected", tool === "brush");
        this.brushRow.hidden = tool !== "brush";
        this.editor.redraw();
    };

    proto.setError = function(msg) {
        var text = msg ? "⚠️ The spec JSON is not usable: " + msg : "";
        if (this.error.textContent === text) return; // no DOM churn: the WebUI observes the page
        this.error.hidden = !msg;
        this.error.textContent = text;
    };

    // what the server's parser says of the spec as it stands (before Generate): null when it is valid
    proto.setInvalid = function(msg) {
        var text = msg ? "⚠️ InitEdit would not be applied: " + msg : "";
        if (this.invalid.textContent === text) return;
        this.invalid.hidden = !msg;
        this.invalid.textContent = text;
    };

    // what the server said about the image the gallery shows ("InitEdit note" in its infotext)
    proto.setNote = function(text, isError) {
        var t = !text ? "" : isError ? "⚠️ Last generation: InitEdit was not applied: " + text : "ℹ️ Last generation: " + text;
        if (this.note.textContent === t) return;
        this.note.hidden = !text;
        this.note.textContent = t;
        this.note.classList.toggle("initedit-warn", !!isError);
    };

    proto.setSeedWarning = function(on) {
        if (this.seedWarn.hidden === !on) return;
        this.seedWarn.hidden = !on;
    };

    // rebuild the lists and the selected item's fields (skipped while the user types in one of them)
    proto.refresh = function() {
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
            holder.appendChild(dom.h("div", {class: "initedit-hint", text: ed.items().length ? "Select a region to edit it." :
                (ed.tab === "layout" ? "No boxes yet: drag on the canvas to draw one." : "No regions yet: drag a box (or paint a mask) over the part to reroll.")}));
            return;
        }
        holder.appendChild(ed.tab === "layout" ? this._layoutFields(it) : this._rerollFields(it));
    };

    proto._list = function(el, tab) {
        var ed = this.editor, items = ed.items(tab);
        el.textContent = "";
        items.forEach(function(it, i) {
            var col = ed.color(i);
            var chip = dom.h("button", {type: "button", class: "initedit-chip" + (ed.tab === tab && ed.sel === i ? " selected" : ""), "data-index": i, onclick: function() {
                ed.select(i);
            }}, [dom.h("span", {class: "initedit-swatch", style: "background:" + col}), ed.label(tab, i) + (it.mask !== undefined && !it.box ? " (mask)" : "")]);
            el.appendChild(chip);
        });
        el.hidden = items.length === 0;
    };

    // the prompt changed: re-check phrases and offer its words again
    proto.promptChanged = function() {
        var ed = this.editor;
        this._list(this.layoutList, "layout");
        if (ed.tab === "layout" && !(this.layoutItem.contains(document.activeElement))) this.refresh();
        else this._checkPhrase();
        ed.redraw();
    };

    ns.Panel = Panel;
})(window.InitEdit = window.InitEdit || {});
