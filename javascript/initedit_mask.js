// InitEdit: a paintable region mask. Kept as white-on-transparent, exported as a white-on-black PNG (base64)
// with the image's aspect at about latent resolution (the noise it selects has no finer grain), which keeps
// the PNG, and so the infotext, small.
(function(ns) {
    "use strict";

    var MIN_SIDE = 64, MAX_SIDE = 256;

    function maskSize(width, height) {
        var longest = Math.max(width, height, 1);
        var side = Math.min(MAX_SIDE, Math.max(MIN_SIDE, Math.round(longest / 8)));
        var s = side / longest;
        return {w: Math.max(8, Math.round(width * s)), h: Math.max(8, Math.round(height * s))};
    }

    function MaskLayer(w, h) {
        this.canvas = document.createElement("canvas");
        this.canvas.width = w;
        this.canvas.height = h;
        this.ctx = this.canvas.getContext("2d", {willReadFrequently: true});
        this.ready = true;
        this._tint = null;
    }

    // a layer from a base64 PNG (white = region); `done` runs once decoded
    MaskLayer.fromBase64 = function(b64, done) {
        var layer = new MaskLayer(8, 8);
        layer.ready = false;
        var img = new Image();
        img.onload = function() {
            var c = layer.canvas, ctx = layer.ctx;
            c.width = img.naturalWidth;
            c.height = img.naturalHeight;
            ctx.drawImage(img, 0, 0);
            var data = ctx.getImageData(0, 0, c.width, c.height);
            var px = data.data;
            for (var i = 0; i < px.length; i += 4) { // luminance -> alpha
                var lum = (px[i] + px[i + 1] + px[i + 2]) / 3 * px[i + 3] / 255;
                px[i] = px[i + 1] = px[i + 2] = 255;
                px[i + 3] = lum;
            }
            ctx.putImageData(data, 0, 0);
            layer.ready = true;
            layer._tint = null;
            layer._dirty = true;
            if (done) done(layer);
        };
        img.onerror = function() {
            layer.ready = true;
            layer.error = "mask is not a PNG image";
            if (done) done(layer);
        };
        img.src = "data:image/png;base64," + b64;
        return layer;
    };

    // paint (or erase) a round-capped line between two points given in fractions; radius in fractions of the longest side
    MaskLayer.prototype.stroke = function(a, b, radius, erase) {
        var c = this.canvas, ctx = this.ctx;
        ctx.save();
        ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
        ctx.strokeStyle = ctx.fillStyle = "#fff";
        ctx.lineCap = ctx.lineJoin = "round";
        ctx.lineWidth = Math.max(1, 2 * radius * Math.max(c.width, c.height));
        ctx.beginPath();
        ctx.moveTo(a.x * c.width, a.y * c.height);
        ctx.lineTo(b.x * c.width + 0.01, b.y * c.height);
        ctx.stroke();
        ctx.restore();
        this._tint = null;
        this._dirty = true;
    };

    // move the painted part by (dx, dy) fractions; what leaves the image is cut off
    MaskLayer.prototype.shift = function(dx, dy) {
        var c = this.canvas, copy = document.createElement("canvas");
        copy.width = c.width;
        copy.height = c.height;
        copy.getContext("2d").drawImage(c, 0, 0);
        this.ctx.clearRect(0, 0, c.width, c.height);
        this.ctx.drawImage(copy, Math.round(dx * c.width), Math.round(dy * c.height));
        this._tint = null;
        this._dirty = true;
    };

    // is the mask painted at point p (fractions)?
    MaskLayer.prototype.hit = function(p) {
        if (!this.ready || p.x < 0 || p.y < 0 || p.x >= 1 || p.y >= 1) return false;
        var x = Math.floor(p.x * this.canvas.width), y = Math.floor(p.y * this.canvas.height);
        return this.ctx.getImageData(x, y, 1, 1).data[3] > 24;
    };

    // bounding box [x0, y0, x1, y1] of the painted part in fractions (null when empty); cached until the next stroke
    MaskLayer.prototype.bounds = function() {
        if (!this._dirty && this._bounds !== undefined) return this._bounds;
        this._dirty = false;
        var w = this.canvas.width, hgt = this.canvas.height, px = this.ctx.getImageData(0, 0, w, hgt).data;
        var x0 = w, y0 = hgt, x1 = -1, y1 = -1;
        for (var y = 0; y < hgt; y++) {
            for (var x = 0; x < w; x++) {
                if (px[(y * w + x) * 4 + 3] > 24) {
                    if (x < x0) x0 = x;
                    if (x > x1) x1 = x;
                    if (y < y0) y0 = y;
                    if (y > y1) y1 = y;
                }
            }
        }
        this._bounds = x1 < 0 ? null : [x0 / w, y0 / hgt, (x1 + 1) / w, (y1 + 1) / hgt];
        return this._bounds;
    };

    MaskLayer.prototype.isEmpty = function() {
        var px = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height).data;
        for (var i = 3; i < px.length; i += 4) if (px[i] > 24) return false;
        return true;
    };

    MaskLayer.prototype.toBase64 = function() {
        var out = document.createElement("canvas");
        out.width = this.canvas.width;
        out.height = this.canvas.height;
        var ctx = out.getContext("2d");
        ctx.fillStyle = "#000";
        ctx.fillRect(0, 0, out.width, out.height);
        ctx.drawImage(this.canvas, 0, 0);
        var url = out.toDataURL("image/png");
        return url.slice(url.indexOf(",") + 1);
    };

    // the mask in one colour, cached until the next stroke
    MaskLayer.prototype.tinted = function(color) {
        if (this._tint && this._tint.color === color) return this._tint.canvas;
        var t = document.createElement("canvas");
        t.width = this.canvas.width;
        t.height = this.canvas.height;
        var ctx = t.getContext("2d");
        ctx.drawImage(this.canvas, 0, 0);
        ctx.globalCompositeOperation = "source-in";
        ctx.fillStyle = color;
        ctx.fillRect(0, 0, t.width, t.height);
        this._tint = {color: color, canvas: t};
        return t;
    };

    ns.mask = {MaskLayer: MaskLayer, maskSize: maskSize};
})(window.InitEdit = window.InitEdit || {});
