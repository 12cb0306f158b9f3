// InitEdit: the box editor's view and input: the canvas (draw, move, resize, delete, nudge, paint masks) over
// the model (initedit_model.js: spec, masks by region id, history). It redraws on events only (one
// requestAnimationFrame per burst of events, never a loop); every finished edit is committed to the model,
// which reports it (`onCommit(jsonText)`): the spec textbox stays the single source of truth.
(function(ns) {
    "use strict";

    // the first six are lib_initedit/heatmaps.py's PALETTE, so box k has one colour on the canvas and the heatmaps
    var PALETTE = ["#e63c3c", "#3c8ce6", "#3cbe5a", "#e6b428", "#aa50d2", "#28c8c8", "#ff6fb5", "#a0d911"];
    var HANDLE_PX = 7; // grab tolerance around edges, in CSS pixels
    var MIN_PX = 4; // smallest box drawn by mouse, in CSS pixels

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

    Editor.PALETTE = PALETTE;

    Object.defineProperty(Editor.prototype, "spec", {get: function() {
        return this.model.spec;
    }});

    Editor.prototype.items = function(tab) {
        return this.model.items(tab || this.tab);
    };

    Editor.prototype.color = function(i) {
        return PALETTE[i % PALETTE.length];
    };

    Editor.prototype.selected = function() {
        var list = this.items();
        return this.sel !== null && this.sel < list.length ? list[this.sel] : null;
    };

    Editor.prototype.select = function(i) {
        this.sel = i;
        this.onSelect(i);
        this.redraw();
    };

    Editor.prototype.setTab = function(tab) {
        if (this.tab === tab) return;
        this.tab = tab;
        this.action = null;
        this.select(null);
    };

    Editor.prototype.setSize = function(w, h) {
        w = parseInt(w, 10);
        h = parseInt(h, 10);
        if (!(w > 0 && h > 0) || (w === this.size.width && h === this.size.height)) return;
        this.size = {width: w, height: h};
        this.layout();
    };

    Editor.prototype.setBackground = function(img) {
        this.bg = img;
        this.redraw();
    };

    // replace the spec from text (paste, the textbox); keeps the selection when it still exists
    Editor.prototype.load = function(text) {
        var err = this.model.load(text);
        if (err) return err;
        this.action = null;
        if (this.sel !== null && this.sel >= this.items().length) this.sel = null;
        this.onSelect(this.sel);
        this.redraw();
        return null;
    };

    Editor.prototype.text = function() {
        return this.model.text();
    };

    Editor.prototype.commit = function() {
        this.model.commit();
    };

    Editor.prototype.undo = function() {
        var sel = this.sel;
        if (!this.model.undo()) return false;
        this.action = null;
        this.sel = sel !== null && sel < this.items().length ? sel : null;
        this.onSelect(this.sel);
        return true;
    };

    // change fields of the selected item (from the panel)
    Editor.prototype.update = function(fields) {
        if (!this.model.update(this.tab, this.sel, fields)) return;
        this.commit();
        this.onSelect(this.sel);
    };

    // change top-level options (vary, rounds, method, hires, heatmaps, keep, guidance, guidance_steps)
    Editor.prototype.setOption = function(key, value) {
        this.model.setOption(key, value);
        this.commit();
    };

    Editor.prototype.remove = function(i) {
        if (i === null || i === undefined) i = this.sel;
        if (!this.model.remove(this.tab, i)) return;
        this.sel = null;
        this.onSelect(null);
        this.commit();
    };

    Editor.prototype.clearAll = function() {
        this.model.clear(this.tab);
        this.sel = null;
        this.onSelect(null);
        this.commit();
    };

    Editor.prototype.add = function(item, mask) {
        this.select(this.model.add(this.tab, item, mask));
    };

    // ---- geometry of the canvas on screen ----

    Editor.prototype.layout = function() {
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

    Editor.prototype.point = function(e) {
        var r = this.canvas.getBoundingClientRect();
        return {x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height, rw: r.width, rh: r.height};
    };

    // the active-tab item under p, preferring the selected one (its handles sit on top)
    Editor.prototype.hit = function(p) {
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

    // ---- pointer and keyboard ----

    Editor.prototype._bind = function() {
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

    Editor.prototype._down = function(e) {
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

    Editor.prototype._move = function(e) {
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

    Editor.prototype._up = function(e) {
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

    Editor.prototype._brushDown = function(p, erase) {
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

    Editor.prototype._brushUp = function(a) {
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

    Editor.prototype._cursor = function(p) {
        var cur = "crosshair";
        if (this.tool === "brush" && this.tab === "reroll") {
            cur = "none";
        } else {
            var h = this.hit(p);
            if (h) cur = this.G.CURSORS[h.op === "maskmove" ? "move" : h.op];
        }
        if (this.canvas.style.cursor !== cur) this.canvas.style.cursor = cur;
    };

    Editor.prototype._key = function(e) {
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

    // ---- drawing ----

    Editor.prototype.redraw = function() {
        var self = this;
        if (this._frame) return;
        var raf = window.requestAnimationFrame || function(f) {
            return setTimeout(f, 16);
        };
        this._frame = raf(function() {
            self._frame = 0;
            self.draw();
        });
    };

    Editor.prototype.draw = function() {
        var c = this.canvas, ctx = this.ctx, dpr = c.width / Math.max(1, c.clientWidth || c.width);
        var W = c.width / dpr, H = c.height / dpr;
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.clearRect(0, 0, W, H);
        this._drawBackground(ctx, W, H);
        var other = this.tab === "layout" ? "reroll" : "layout";
        this._drawItems(ctx, W, H, other, false);
        this._drawItems(ctx, W, H, this.tab, true);
        var a = this.action;
        if (a && a.type === "create") {
            var b = this.G.span(a.start, a.cur);
            ctx.setLineDash([5, 4]);
            ctx.strokeStyle = "#fff";
            ctx.lineWidth = 1.5;
            ctx.strokeRect(b[0] * W, b[1] * H, (b[2] - b[0]) * W, (b[3] - b[1]) * H);
            ctx.setLineDash([]);
        }
        var shown = a && a.type === "create" ? this.G.span(a.start, a.cur) : a && a.type === "drag" && this.selected() ? this.selected().box : null;
        if (shown) this._drawSize(ctx, shown, W, H);
        if (this.tool === "brush" && this.tab === "reroll" && this.hover) {
            ctx.beginPath();
            ctx.arc(this.hover.x * W, this.hover.y * H, this.brush * Math.max(W, H), 0, 2 * Math.PI);
            ctx.strokeStyle = "#fff";
            ctx.lineWidth = 1;
            ctx.stroke();
            ctx.strokeStyle = "#000";
            ctx.setLineDash([3, 3]);
            ctx.stroke();
            ctx.setLineDash([]);
        }
    };

    // "192 × 256 px" under the box while it is drawn, moved or resized
    Editor.prototype._drawSize = function(ctx, b, W, H) {
        var text = Math.round((b[2] - b[0]) * this.size.width) + " × " + Math.round((b[3] - b[1]) * this.size.height) + " px";
        ctx.font = "11px sans-serif";
        var tw = ctx.measureText(text).width + 8, x = Math.min(b[2] * W, W) - tw, y = b[3] * H + 2;
        if (y + 16 > H) y = b[3] * H - 18;
        x = Math.max(0, x);
        ctx.fillStyle = "rgba(0,0,0,0.7)";
        ctx.fillRect(x, y, tw, 16);
        ctx.fillStyle = "#fff";
        ctx.textBaseline = "middle";
        ctx.fillText(text, x + 4, y + 8);
        ctx.textBaseline = "alphabetic";
    };

    Editor.prototype._drawBackground = function(ctx, W, H) {
        if (this.bg && this.bg.complete && this.bg.naturalWidth) {
            ctx.drawImage(this.bg, 0, 0, W, H);
            return;
        }
        ctx.fillStyle = "#3a3d44";
        ctx.fillRect(0, 0, W, H);
        ctx.strokeStyle = "rgba(255,255,255,0.08)";
        ctx.lineWidth = 1;
        ctx.beginPath();
        for (var i = 1; i < 8; i++) {
            ctx.moveTo(Math.round(i * W / 8) + 0.5, 0);
            ctx.lineTo(Math.round(i * W / 8) + 0.5, H);
            ctx.moveTo(0, Math.round(i * H / 8) + 0.5);
            ctx.lineTo(W, Math.round(i * H / 8) + 0.5);
        }
        ctx.stroke();
        ctx.fillStyle = "rgba(255,255,255,0.35)";
        ctx.font = "12px sans-serif";
        ctx.textAlign = "right";
        ctx.fillText(this.size.width + " × " + this.size.height, W - 6, H - 6);
        ctx.textAlign = "left";
    };

    Editor.prototype.label = function(tab, i) {
        var it = this.items(tab)[i];
        if (tab === "layout") {
            var ok = this.S.phraseInPrompt(it.phrase, this.promptText());
            return (ok ? "" : "⚠ ") + (it.phrase || "phrase?");
        }
        var s = "#" + (i + 1) + " " + (it.seed === -1 ? "🎲" : it.seed);
        if (it.strength < 1) s += " · " + it.strength.toFixed(2);
        return s;
    };

    Editor.prototype._drawItems = function(ctx, W, H, tab, active) {
        var list = this.items(tab);
        ctx.save();
        if (!active) ctx.globalAlpha = 0.4;
        for (var i = 0; i < list.length; i++) {
            var it = list[i], col = this.color(i), sel = active && i === this.sel;
            var anchor;
            if (it.box) {
                var x = it.box[0] * W, y = it.box[1] * H, w = (it.box[2] - it.box[0]) * W, h = (it.box[3] - it.box[1]) * H;
                ctx.fillStyle = col + (sel ? "40" : "22");
                ctx.fillRect(x, y, w, h);
                ctx.setLineDash(active ? [] : [4, 3]);
                ctx.lineWidth = (sel ? 2.5 : 1.5) + 2; // a dark rim keeps the outline visible on any image
                ctx.strokeStyle = "rgba(0,0,0,0.55)";
                ctx.strokeRect(x, y, w, h);
                ctx.lineWidth = sel ? 2.5 : 1.5;
                ctx.strokeStyle = col;
                ctx.strokeRect(x, y, w, h);
                ctx.setLineDash([]);
                if (sel) this._drawHandles(ctx, x, y, w, h, col);
                anchor = [x, y];
            } else {
                var layer = tab === "reroll" ? this.model.maskOf(it) : null;
                var mv = this.action && this.action.type === "maskmove" && this.action.layer === layer ? this.action : null;
                if (layer && layer.ready && !layer.error) {
                    ctx.save();
                    ctx.globalAlpha *= sel ? 0.6 : 0.42;
                    ctx.drawImage(layer.tinted(col), mv ? mv.dx * W : 0, mv ? mv.dy * H : 0, W, H);
                    ctx.restore();
                }
                var mb = layer && layer.ready && !layer.error && !(this.action && this.action.type === "paint" && this.action.layer === layer) ? layer.bounds() : null;
                if (mb && mv) mb = [mb[0] + mv.dx, mb[1] + mv.dy];
                anchor = mb ? [mb[0] * W, mb[1] * H - 18] : [4, 4 + 20 * i];
            }
            this._drawLabel(ctx, this.label(tab, i), anchor[0], anchor[1], col, W);
        }
        ctx.restore();
    };

    Editor.prototype._drawHandles = function(ctx, x, y, w, h, col) {
        var pts = [[x, y], [x + w / 2, y], [x + w, y], [x, y + h / 2], [x + w, y + h / 2], [x, y + h], [x + w / 2, y + h], [x + w, y + h]];
        ctx.fillStyle = "#fff";
        ctx.strokeStyle = col;
        ctx.lineWidth = 1.5;
        pts.forEach(function(q) {
            ctx.fillRect(q[0] - 3.5, q[1] - 3.5, 7, 7);
            ctx.strokeRect(q[0] - 3.5, q[1] - 3.5, 7, 7);
        });
    };

    Editor.prototype._drawLabel = function(ctx, text, x, y, col, W) {
        ctx.font = "600 12px sans-serif";
        var tw = ctx.measureText(text).width + 8;
        var lx = Math.max(0, Math.min(x, W - tw)), ly = Math.max(0, y);
        ctx.fillStyle = col;
        ctx.fillRect(lx, ly, tw, 17);
        ctx.fillStyle = "#111";
        ctx.textBaseline = "middle";
        ctx.fillText(text, lx + 4, ly + 9);
        ctx.textBaseline = "alphabetic";
    };

    ns.Editor = Editor;
})(window.InitEdit = window.InitEdit || {});
