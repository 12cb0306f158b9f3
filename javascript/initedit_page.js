// InitEdit: what the editor needs of the WebUI page, by the DOM and the WebUI's documented JS callbacks only:
// finding elements, telling gradio a field changed, following a field's value, loading an image.
(function(ns) {
    "use strict";

    function app() {
        return typeof gradioApp === "function" ? gradioApp() : document;
    }

    function byId(id) {
        return document.getElementById(id) || app().querySelector("#" + CSS.escape(id));
    }

    // what the WebUI's updateInput does: tell gradio (3 and 4) that a field changed
    function sendInput(el) {
        if (typeof updateInput === "function") return updateInput(el);
        el.dispatchEvent(new Event("input", {bubbles: true}));
    }

    // call `cb` (batched) whenever el.value changes: typing, or a framework assigning .value (paste, API-free updates)
    function watchValue(el, cb) {
        if (!el || el.__initeditWatch) return;
        var pending = false;
        var fire = function() {
            if (pending) return;
            pending = true;
            setTimeout(function() {
                pending = false;
                cb(el.value);
            }, 0);
        };
        var proto = Object.getPrototypeOf(el), desc = null;
        while (proto && !(desc = Object.getOwnPropertyDescriptor(proto, "value"))) proto = Object.getPrototypeOf(proto);
        if (desc && desc.set && desc.configurable !== false) {
            Object.defineProperty(el, "value", {
                configurable: true,
                enumerable: desc.enumerable,
                get: function() {
                    return desc.get.call(this);
                },
                set: function(v) {
                    desc.set.call(this, v);
                    fire();
                },
            });
        }
        el.addEventListener("input", fire);
        el.addEventListener("change", fire);
        el.__initeditWatch = fire;
    }

    function loadImage(src, done) {
        var img = new Image();
        img.onload = function() {
            done(img);
        };
        img.onerror = function() {
            done(null);
        };
        img.src = src;
    }

    // filled in place: the files that load before this one hold the same object
    Object.assign(ns.page = ns.page || {},
        {app: app, byId: byId, sendInput: sendInput, watchValue: watchValue, loadImage: loadImage});
})(window.InitEdit = window.InitEdit || {});
