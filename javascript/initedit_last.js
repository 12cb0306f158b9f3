// InitEdit: what the last generation left on the page: its info JSON (seeds, infotexts), the region seeds it
// resolved, the server's note or error about it; and the fix for a main seed of -1. Methods of the Mount
// (initedit.js).
(function(ns) {
    "use strict";

    var proto = ns.mountMethods = ns.mountMethods || {}; // Mount.prototype (initedit.js)
    var page = ns.page = ns.page || {}; // initedit_page.js: filled when it loads, used at call time

    // what the server wrote about the image the gallery shows: "InitEdit error" (not applied) or "InitEdit note"
    proto.readNote = function() {
        var info = this.generationInfo(), note = null, isError = false;
        if (info && Array.isArray(info.infotexts) && info.infotexts.length) {
            var text = info.infotexts[Math.min(this.galleryIndex(), info.infotexts.length - 1)];
            var err = this.S.infotextValue(text, this.S.keys.error), v = this.S.infotextValue(text, this.S.keys.note);
            if (err !== null) {
                note = typeof err === "string" ? err : JSON.stringify(err);
                isError = true;
            } else if (v !== null) {
                note = typeof v === "string" ? v : JSON.stringify(v);
            }
        }
        this.panel.setNote(note, isError);
    };

    // the last generation's info JSON ({seed, infotexts, ...}) or null
    proto.generationInfo = function() {
        var el = page.byId("generation_info_" + this.tab);
        var ta = el && (el.querySelector("textarea") || (el.tagName === "TEXTAREA" ? el : null));
        if (!ta || !ta.value) return null;
        try {
            return JSON.parse(ta.value);
        } catch (e) {
            return null;
        }
    };

    proto.galleryIndex = function() {
        try {
            var i = typeof selected_gallery_index === "function" ? selected_gallery_index() : -1;
            return i >= 0 ? i : 0;
        } catch (e) {
            return 0;
        }
    };

    // the resolved seed of reroll region i in the last generation's infotext
    proto.lastResolvedSeed = function(i) {
        var info = this.generationInfo();
        if (!info || !Array.isArray(info.infotexts) || !info.infotexts.length) return null;
        var idx = Math.min(this.galleryIndex(), info.infotexts.length - 1);
        var texts = [info.infotexts[idx]].concat(info.infotexts);
        for (var k = 0; k < texts.length; k++) {
            var raw = this.S.infotextValue(texts[k], this.S.keys.infotext);
            if (raw === null) continue;
            var res = this.S.parse(typeof raw === "string" ? raw : JSON.stringify(raw));
            var r = res.spec.reroll[i];
            if (!res.error && r && r.seed >= 0) return r.seed;
        }
        return null;
    };

    // main seed is -1: reuse the last one (the WebUI's ♻️) or pick a fixed one
    proto.fixMainSeed = function() {
        var info = this.generationInfo(), reuse = page.byId(this.tab + "_reuse_seed");
        if (info && info.seed !== undefined && info.seed !== -1 && reuse) {
            reuse.click();
        } else {
            var seed = this.field("seed", "input");
            if (!seed) return;
            seed.value = Math.floor(Math.random() * this.S.RANDOM_SEED_LIMIT);
            page.sendInput(seed);
        }
        var self = this;
        setTimeout(function() {
            self.readSeed();
        }, 300);
    };
})(window.InitEdit = window.InitEdit || {});
