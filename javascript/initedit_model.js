// InitEdit: the editor's model: the spec, a mask layer per masked region (keyed by the region's id, never by
// its position), and the undo history. No canvas, no DOM events: the view (initedit_editor.js) and the panel
// change it only through these methods, and `onChange(text, how)` reports every committed edit.
(function(ns) {
    "use strict";

    var nextId = 1;

    // an id that travels with the region object but not into its JSON (not enumerable)
    function tag(region) {
        if (!region.id) Object.defineProperty(region, "id", {value: "r" + nextId++, enumerable: false});
        return region;
    }

    // S: the spec codec (initedit_spec.js codec(facts)), M: initedit_mask.js
    function Model(S, M, opts) {
        opts = opts || {};
        this.S = S;
        this.M = M;
        this.onChange = opts.onChange || function() {};
        this.onMaskReady = opts.onMaskReady || function() {};
        this.spec = S.empty();
        this.masks = new Map(); // region id -> MaskLayer
        this.history = [];
        this._committed = undefined;
        this._lastCommit = 0;
    }

    Model.prototype.items = function(tab) {
        return tab === "layout" ? this.spec.layout : this.spec.reroll;
    };

    Model.prototype.maskOf = function(region) {
        return region && region.id ? this.masks.get(region.id) || null : null;
    };

    // the regions' masks follow the regions: drop layers whose region is gone
    Model.prototype._prune = function() {
        var live = new Set(this.spec.reroll.map(function(r) {
            return r.id;
        }));
        var masks = this.masks;
        Array.from(masks.keys()).forEach(function(id) {
            if (!live.has(id)) masks.delete(id);
        });
    };

    // replace the spec from text (paste, the textbox, undo); returns an error text or null
    Model.prototype.load = function(text) {
        var res = this.S.parse(text);
        if (res.error) return res.error;
        var self = this;
        this.spec = res.spec;
        this.masks = new Map();
        this.spec.reroll.forEach(function(r) {
            tag(r);
            if (r.mask) {
                self.masks.set(r.id, self.M.MaskLayer.fromBase64(r.mask, function() {
                    self.onMaskReady(r);
                }));
            }
        });
        this._remember(this.S.serialize(res.spec), false);
        return null;
    };

    Model.prototype.text = function() {
        return this.S.serialize(this.spec);
    };

    Model.prototype.commit = function() {
        var text = this.text();
        this._remember(text, true);
        this.onChange(text, "commit");
        return text;
    };

    // undo history of committed texts; a burst of commits (a slider drag, typing) is one step
    Model.prototype._remember = function(text, coalesce) {
        var now = Date.now();
        if (this._committed !== undefined && text !== this._committed) {
            if (!(coalesce && now - this._lastCommit < 600 && this.history.length)) this.history.push(this._committed);
            if (this.history.length > 100) this.history.shift();
        }
        this._committed = text;
        this._lastCommit = coalesce ? now : 0;
    };

    Model.prototype.undo = function() {
        if (!this.history.length) return false;
        var prev = this.history.pop();
        this._committed = undefined; // loading the previous state is not a new step
        this.load(prev);
        this._lastCommit = 0;
        this.onChange(prev, "undo");
        return true;
    };

    // add an item to a tab's list (a region may come with its mask layer); returns its index
    Model.prototype.add = function(tab, item, mask) {
        var list = this.items(tab);
        if (tab !== "layout") {
            tag(item);
            if (mask) this.masks.set(item.id, mask);
        }
        list.push(item);
        return list.length - 1;
    };

    Model.prototype.remove = function(tab, i) {
        var list = this.items(tab);
        if (i === null || i === undefined || i < 0 || i >= list.length) return false;
        list.splice(i, 1);
        this._prune();
        return true;
    };

    Model.prototype.clear = function(tab) {
        this.items(tab).length = 0;
        this._prune();
    };

    Model.prototype.update = function(tab, i, fields) {
        var it = this.items(tab)[i];
        if (!it) return false;
        Object.keys(fields).forEach(function(k) {
            it[k] = fields[k];
        });
        return true;
    };

    // top-level options (vary, rounds, keep, guidance, ...): the value as the parser would take it
    Model.prototype.setOption = function(key, value) {
        this.spec[key] = this.S.field(key, value);
    };

    // a region's mask was repainted or moved: its PNG goes into the spec
    Model.prototype.storeMask = function(region) {
        var layer = this.maskOf(region);
        if (layer) region.mask = layer.toBase64();
    };

    ns.Model = Model;
})(window.InitEdit = window.InitEdit || {});
