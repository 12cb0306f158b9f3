// InitEdit: small DOM builders for the panel: an element from attributes and children, a button, and a
// labelled range + number pair.
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

    // filled in place: the files that load before this one hold the same object
    Object.assign(ns.dom = ns.dom || {}, {h: h, button: button, slider: slider});
})(window.InitEdit = window.InitEdit || {});
