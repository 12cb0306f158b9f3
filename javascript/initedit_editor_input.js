// InitEdit: the box editor's input: pointer gestures (draw, move, resize, paint and move masks), keys
// (Delete, arrows, Escape, Ctrl+Z) and hit-testing. Methods of the Editor (initedit_editor.js).
(function(ns) {
    "use strict";

    var proto = ns.editorMethods = ns.editorMethods || {}; // Editor.prototype (initedit_editor.js)
    var HANDLE_PX = 7; // grab tolerance around edges, in CSS pixels
    var MIN_PX = 4; // smallest box drawn by mouse, in CSS pixels

    // the active-tab item under p, preferring the selected one (its handles sit on top)
    proto.hit = function(p) {
        var list = this.items(), tx = HANDLE_PX / p.rw, ty = HANDLE_PX / p.rh;
        var order = [];
        if (this.sel !== null && this.sel < list.length) order.push(this.sel);
        for (var i = list.length - 1; i >= 0; i--) if (i !== this.sel) order.push(i);
        for (var k = 0; k < order.length; k++) {
            var it = list[order[k]];
            if (it.box) {
                var op = this.G.hitTest(it.box, p, tx, ty);
                if (op) return {index: order[k], op: op};
            } else if (this.model.maskOf(it) && this.model.maskOf(it).hit(p)) {
                return {index: order[k], op: "maskmove"};
            }
        }
        return null;
    };

    proto._bind = function() {
        var self = this, c = this.canvas;
        c.addEventListener("pointerdown", function(e) {
            self._down(e);
        });
        c.addEventListener("pointermove", function(e) {
            self._move(e);
        });
        c.addEventListener("pointerup", function(e) {
            self._up(e);
        });
        c.addEventListener("pointercancel", function() { // e.g. a touch turned into a scroll: undo the gesture
            var a = self.action, it = self.selected();
            self.action = null;
            if (a && a.type === "drag" && it && a.box) it.box = a.box;
            if (a && a.type === "paint") self._brushUp(a);
            self.redraw();
        });
        c.addEventListener("pointerleave", function() {
            if (!self.action) {
                self.hover = null;
                self.redraw();
            }
        });
        c.addEventListener("keydown", function(e) {
            self._key(e);
        });
        c.addEventListener("dblclick", function(e) {
            var h = self.hit(self.point(e));
            if (h && self.onEditRequest) self.onEditRequest(h.index);
        });
        c.addEventListener("contextmenu", function(e) {
            if (self.tool === "brush") e.preventDefault();
        });
    };

    proto._down = function(e) {
        if (e.button !== 0 && !(e.button === 2 && this.tool === "brush" && this.tab === "reroll")) return;
        e.preventDefault();
        this.canvas.focus({preventScroll: true});
        var p = this.point(e);
        if (this.canvas.setPointerCapture && e.pointerId !== undefined) {
            try {
                this.canvas.setPointerCapture(e.pointerId);
            } catch (err) { /* synthetic events have no active pointer */ }
        }
        if (this.tab === "reroll" && this.tool === "brush") return this._brushDown(p, e.button === 2 || e.altKey || this.erase);
        var h = e.shiftKey ? null : this.hit(p); // Shift: always draw a new box, even over another one
        if (h) {
            if (h.index !== this.sel) this.select(h.index);
            var it = this.items()[h.index];
            this.action = h.op === "maskmove" ? {type: "maskmove", start: p, layer: this.model.maskOf(it), dx: 0, dy: 0, region: it} :
                {type: "drag", op: h.op, start: p, box: it.box.slice()};
        } else {
            this.action = {type: "create", start: p, cur: p};
        }
        this.redraw();
    };

    proto._move = function(e) {
        var p = this.point(e), a = this.action;
        this.hover = p;
        if (!a) {
            this._cursor(p);
            if (this.tool === "brush" && this.tab === "reroll") this.redraw();
            return;
        }
        if (a.type === "create") {
            a.cur = p;
        } else if (a.type === "drag") {
            var it = this.selected();
            if (it) it.box = this.G.drag(a.op, a.box, p.x - a.start.x, p.y - a.start.y, MIN_PX / Math.max(p.rw, p.rh));
        } else if (a.type === "maskmove") {
            a.dx = p.x - a.start.x;
            a.dy = p.y - a.start.y;
        } else if (a.type === "paint") {
            a.layer.stroke(a.last, p, this.brush, a.erase);
            a.last = p;
        }
        this.redraw();
    };

    proto._up = function(e) {
        var a = this.action;
        this.action = null;
        if (!a) return;
        var p = this.point(e);
        if (a.type === "create") {
            var box = this.G.span(a.start, p);
            if ((box[2] - box[0]) * p.rw >= MIN_PX && (box[3] - box[1]) * p.rh >= MIN_PX) {
                this.add(this.tab === "layout" ? {phrase: "", box: box} : // the phrase is picked in the panel
                    this.S.newRegion({box: box}));
                this.commit();
            } else {
                this.select(null);
            }
        } else if (a.type === "drag") {
            var moved = Math.abs(p.x - a.start.x) * p.rw + Math.abs(p.y - a.start.y) * p.rh > 0;
            if (moved) this.commit();
        } else if (a.type === "paint") {
            this._brushUp(a);
        } else if (a.type === "maskmove" && (a.dx || a.dy) && this.spec.reroll.indexOf(a.region) >= 0) {
            a.layer.shift(a.dx, a.dy);
            this.model.storeMask(a.region);
            this.commit();
        }
        this.redraw();
    };

    proto._brushDown = function(p, erase) {
        var it = this.selected(), layer = it && !it.box ? this.model.maskOf(it) : null;
        if (!layer) {
            if (erase) return; // nothing to erase
            var sz = this.M.maskSize(this.size.width, this.size.height);
            layer = new this.M.MaskLayer(sz.w, sz.h);
            it = this.S.newRegion({mask: ""});
            this.add(it, layer);
        }
        layer.stroke(p, p, this.brush, erase);
        this.action = {type: "paint", layer: layer, last: p, erase: erase, region: it};
        this.redraw();
    };

    proto._brushUp = function(a) {
        var i = this.spec.reroll.indexOf(a.region);
        if (i < 0) return;
        if (a.layer.isEmpty()) {
            this.remove(i);
            return;
        }
        this.model.storeMask(a.region);
        this.commit();
        this.onSelect(this.sel);
    };

    proto._cursor = function(p) {
        var cur = "crosshair";
        if (this.tool === "brush" && this.tab === "reroll") {
            cur = "none";
        } else {
            var h = this.hit(p);
            if (h) cur = this.G.CURSORS[h.op === "maskmove" ? "move" : h.op];
        }
        if (this.canvas.style.cursor !== cur) this.canvas.style.cursor = cur;
    };

    proto._key = function(e) {
        var it = this.selected();
        var handled = function() { // keep the WebUI's page-wide keys (Esc interrupts a generation) out of it
            e.preventDefault();
            e.stopPropagation();
        };
        if (e.key === "Escape") {
            this.select(null);
            return handled();
        }
        if ((e.ctrlKey || e.metaKey) && !e.shiftKey && (e.key === "z" || e.key === "Z")) {
            this.undo();
            return handled();
        }
        if (!it) return;
        if (e.key === "Delete" || e.key === "Backspace") {
            this.remove();
            return handled();
        }
        var dirs = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
        var d = dirs[e.key];
        if (!d || !it.box) return;
        var step = e.shiftKey ? 10 : 1; // image pixels
        it.box = this.G.nudge(it.box, d[0] * step / this.size.width, d[1] * step / this.size.height, e.altKey, 1 / Math.max(this.size.width, this.size.height));
        handled();
        this.commit();
    };
})(window.InitEdit = window.InitEdit || {});
