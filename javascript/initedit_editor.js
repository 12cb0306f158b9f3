// InitEdit: the box editor's state and API over the model (initedit_model.js: spec, masks by region id,
// history): selection, tabs, size, background, and the edits the panel asks for. Its input (gestures, keys:
// initedit_editor_input.js) and drawing (initedit_editor_draw.js) are methods of the same prototype, each in
// its own file. It redraws on events only (one requestAnimationFrame per burst of events, never a loop);
// every finished edit is committed to the model, which reports it (`onCommit(jsonText)`): the spec textbox
// stays the single source of truth.
(function(ns) {
    "use strict";

    // Editor.prototype, shared with initedit_editor_input.js and initedit_editor_draw.js: whichever file
    // loads first makes it, so the order the WebUI loads them in does not matter
    var proto = ns.editorMethods = ns.editorMethods || {};

    // mods: {spec: the codec of the server's facts, geometry, mask}, resolved by the caller at mount time
    function Editor(canvas, mods, opts) {
        var self = this;
        this.S = mods.spec;
        this.G = mods.geometry;
        this.M = mods.mask;
        this.canvas = canvas;
        this.ctx = canvas.getContext("2d");
        this.onCommit = opts.onCommit || function() {};
        this.onSelect = opts.onSelect || function() {};
        this.promptText = opts.promptText || function() {
            return "";
        };
        this.model = new ns.Model(this.S, this.M, {
            onChange: function(text) {
                self.onCommit(text);
                self.redraw();
            },
            onMaskReady: function() {
                self.redraw();
            },
        });
        this.tab = "reroll";
        this.tool = "box"; // "box" | "brush" (reroll tab only)
        this.brush = 0.04; // radius, fraction of the longest side
        this.erase = false;
        this.sel = null; // index into the active tab's list
        this.size = {width: 512, height: 512};
        this.bg = null; // HTMLImageElement or null (blank)
        this.action = null; // the pointer gesture in progress
        this.hover = null;
        this._frame = 0;
        this._bind();
    }

    Editor.prototype = proto;
    proto.constructor = Editor;

    Object.defineProperty(proto, "spec", {get: function() {
        return this.model.spec;
    }});

    proto.items = function(tab) {
        return this.model.items(tab || this.tab);
    };

    // box k's colour: the heatmaps' palette (lib_initedit/layout/heatmaps.py, sent with the spec's facts)
    proto.color = function(i) {
        return this.S.PALETTE[i % this.S.PALETTE.length];
    };

    proto.selected = function() {
        var list = this.items();
        return this.sel !== null && this.sel < list.length ? list[this.sel] : null;
    };

    proto.select = function(i) {
        this.sel = i;
        this.onSelect(i);
        this.redraw();
    };

    proto.setTab = function(tab) {
        if (this.tab === tab) return;
        this.tab = tab;
        this.action = null;
        this.select(null);
    };

    proto.setSize = function(w, h) {
        w = parseInt(w, 10);
        h = parseInt(h, 10);
        if (!(w > 0 && h > 0) || (w === this.size.width && h === this.size.height)) return;
        this.size = {width: w, height: h};
        this.layout();
    };

    proto.setBackground = function(img) {
        this.bg = img;
        this.redraw();
    };

    // replace the spec from text (paste, the textbox); keeps the selection when it still exists
    proto.load = function(text) {
        var err = this.model.load(text);
        if (err) return err;
        this.action = null;
        if (this.sel !== null && this.sel >= this.items().length) this.sel = null;
        this.onSelect(this.sel);
        this.redraw();
        return null;
    };

    proto.text = function() {
        return this.model.text();
    };

    proto.commit = function() {
        this.model.commit();
    };

    proto.undo = function() {
        var sel = this.sel;
        if (!this.model.undo()) return false;
        this.action = null;
        this.sel = sel !== null && sel < this.items().length ? sel : null;
        this.onSelect(this.sel);
        return true;
    };

    // change fields of the selected item (from the panel)
    proto.update = function(fields) {
        if (!this.model.update(this.tab, this.sel, fields)) return;
        this.commit();
        this.onSelect(this.sel);
    };

    // change top-level options (vary, rounds, method, hires, heatmaps, keep, guidance, guidance_steps)
    proto.setOption = function(key, value) {
        this.model.setOption(key, value);
        this.commit();
    };

    proto.remove = function(i) {
        if (i === null || i === undefined) i = this.sel;
        if (!this.model.remove(this.tab, i)) return;
        this.sel = null;
        this.onSelect(null);
        this.commit();
    };

    proto.clearAll = function() {
        this.model.clear(this.tab);
        this.sel = null;
        this.onSelect(null);
        this.commit();
    };

    proto.add = function(item, mask) {
        this.select(this.model.add(this.tab, item, mask));
    };

    // ---- geometry of the canvas on screen ----

    proto.layout = function() {
        var c = this.canvas, box = c.parentElement;
        var avail = Math.max(120, box ? box.clientWidth : 400);
        var maxH = Math.max(160, Math.min(window.innerHeight * 0.6, 560));
        var aspect = this.size.width / this.size.height;
        var w = Math.min(avail, maxH * aspect), h = w / aspect;
        var cw = Math.round(w) + "px", ch = Math.round(h) + "px";
        if (c.style.width !== cw) c.style.width = cw;
        if (c.style.height !== ch) c.style.height = ch;
        var dpr = window.devicePixelRatio || 1, bw = Math.round(w * dpr), bh = Math.round(h * dpr);
        if (c.width !== bw) c.width = bw;
        if (c.height !== bh) c.height = bh;
        this.redraw();
    };

    proto.point = function(e) {
        var r = this.canvas.getBoundingClientRect();
        return {x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height, rw: r.width, rh: r.height};
    };

    ns.Editor = Editor;
})(window.InitEdit = window.InitEdit || {});
