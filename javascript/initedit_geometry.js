// InitEdit: pure box geometry in image fractions (0..1): hit tests, drag operations, nudges. No DOM.
(function(ns) {
    "use strict";

    var CURSORS = {
        move: "move", n: "ns-resize", s: "ns-resize", e: "ew-resize", w: "ew-resize",
        ne: "nesw-resize", sw: "nesw-resize", nw: "nwse-resize", se: "nwse-resize",
    };

    function clamp(v, lo, hi) {
        return Math.min(hi, Math.max(lo, v));
    }

    // which part of `box` is under point p; tolerances tx, ty are in fractions (a few screen pixels)
    function hitTest(box, p, tx, ty) {
        var x0 = box[0], y0 = box[1], x1 = box[2], y1 = box[3];
        if (p.x < x0 - tx || p.x > x1 + tx || p.y < y0 - ty || p.y > y1 + ty) return null;
        // small boxes: keep a grabbable middle by shrinking the edge zones
        var ex = Math.min(tx, (x1 - x0) / 3), ey = Math.min(ty, (y1 - y0) / 3);
        var n = Math.abs(p.y - y0) <= ey || (p.y < y0);
        var s = Math.abs(p.y - y1) <= ey || (p.y > y1);
        var w = Math.abs(p.x - x0) <= ex || (p.x < x0);
        var e = Math.abs(p.x - x1) <= ex || (p.x > x1);
        var v = n ? "n" : s ? "s" : "";
        var h = w ? "w" : e ? "e" : "";
        return (v + h) || "move";
    }

    // box after dragging `op` by (dx, dy) from `start`; keeps it inside the image and at least `min` wide/high
    function drag(op, start, dx, dy, min) {
        var x0 = start[0], y0 = start[1], x1 = start[2], y1 = start[3];
        if (op === "move") {
            var mx = clamp(dx, -x0, 1 - x1), my = clamp(dy, -y0, 1 - y1);
            return [x0 + mx, y0 + my, x1 + mx, y1 + my];
        }
        if (op.indexOf("w") >= 0) x0 = clamp(x0 + dx, 0, x1 - min);
        if (op.indexOf("e") >= 0) x1 = clamp(x1 + dx, x0 + min, 1);
        if (op.indexOf("n") >= 0) y0 = clamp(y0 + dy, 0, y1 - min);
        if (op.indexOf("s") >= 0) y1 = clamp(y1 + dy, y0 + min, 1);
        return [x0, y0, x1, y1];
    }

    // the box spanned by two points, inside the image
    function span(a, b) {
        return [clamp(Math.min(a.x, b.x), 0, 1), clamp(Math.min(a.y, b.y), 0, 1),
            clamp(Math.max(a.x, b.x), 0, 1), clamp(Math.max(a.y, b.y), 0, 1)];
    }

    // keyboard: move by (dx, dy), or with `resize` move the right/bottom edge
    function nudge(box, dx, dy, resize, min) {
        return drag(resize ? (dx ? "e" : "s") : "move", box, dx, dy, min);
    }

    function area(box) {
        return Math.max(0, box[2] - box[0]) * Math.max(0, box[3] - box[1]);
    }

    ns.geometry = {CURSORS: CURSORS, hitTest: hitTest, drag: drag, span: span, nudge: nudge, area: area, clamp: clamp};
})(window.InitEdit = window.InitEdit || {});
