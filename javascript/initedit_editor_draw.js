// InitEdit: the box editor's drawing: background, boxes, masks, labels, handles, the size while drawing and
// the brush. Redraws on events only, one requestAnimationFrame per burst. Methods of the Editor
// (initedit_editor.js).
(function(ns) {
    "use strict";

    var proto = ns.editorMethods = ns.editorMethods || {}; // Editor.prototype (initedit_editor.js)

    proto.redraw = function() {
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

    proto.draw = function() {
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
    proto._drawSize = function(ctx, b, W, H) {
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

    proto._drawBackground = function(ctx, W, H) {
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

    proto.label = function(tab, i) {
        var it = this.items(tab)[i];
        if (tab === "layout") {
            var ok = this.S.phraseInPrompt(it.phrase, this.promptText());
            return (ok ? "" : "⚠ ") + (it.phrase || "phrase?");
        }
        var s = "#" + (i + 1) + " " + (it.seed === -1 ? "🎲" : it.seed);
        if (it.strength < 1) s += " · " + it.strength.toFixed(2);
        return s;
    };

    proto._drawItems = function(ctx, W, H, tab, active) {
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

    proto._drawHandles = function(ctx, x, y, w, h, col) {
        var pts = [[x, y], [x + w / 2, y], [x + w, y], [x, y + h / 2], [x + w, y + h / 2], [x, y + h], [x + w / 2, y + h], [x + w, y + h]];
        ctx.fillStyle = "#fff";
        ctx.strokeStyle = col;
        ctx.lineWidth = 1.5;
        pts.forEach(function(q) {
            ctx.fillRect(q[0] - 3.5, q[1] - 3.5, 7, 7);
            ctx.strokeRect(q[0] - 3.5, q[1] - 3.5, 7, 7);
        });
    };

    proto._drawLabel = function(ctx, text, x, y, col, W) {
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
})(window.InitEdit = window.InitEdit || {});
