// InitEdit: the canvas background: the image the gallery shows, a file, or an image dropped on the canvas.
// Methods of the Mount (initedit.js).
(function(ns) {
    "use strict";

    var proto = ns.mountMethods = ns.mountMethods || {}; // Mount.prototype (initedit.js)
    var page = ns.page = ns.page || {}; // initedit_page.js: filled when it loads, used at call time

    // the image the gallery shows (the selected one, else the first)
    proto.galleryImage = function() {
        var g = page.byId(this.tab + "_gallery");
        if (!g) return null;
        var img = g.querySelector(".preview img, img.preview, [data-testid='detailed-image'] img") || g.querySelector("img");
        return img && img.src ? img : null;
    };

    proto.followGallery = function(force) {
        var img = this.galleryImage(), self = this;
        if (!img) {
            if (force) this.panel.setError(null);
            return;
        }
        if (!force && img.src === this.bgSrc) return;
        this.bgSrc = img.src;
        page.loadImage(img.src, function(loaded) {
            if (loaded && self.bgMode === "last") self.editor.setBackground(loaded);
        });
    };

    proto.useFile = function(file) {
        var self = this, reader = new FileReader();
        reader.onload = function() {
            page.loadImage(reader.result, function(img) {
                if (!img) return;
                self.bgMode = "file";
                self.editor.setBackground(img);
            });
        };
        reader.readAsDataURL(file);
    };

    proto._dropTarget = function(el) {
        var self = this;
        el.addEventListener("dragover", function(e) {
            if (e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types, "Files") >= 0) {
                e.preventDefault();
                e.stopPropagation();
                el.classList.add("initedit-drop");
            }
        });
        el.addEventListener("dragleave", function() {
            el.classList.remove("initedit-drop");
        });
        el.addEventListener("drop", function(e) {
            el.classList.remove("initedit-drop");
            var f = e.dataTransfer && e.dataTransfer.files[0];
            if (!f || !/^image\//.test(f.type)) return;
            e.preventDefault();
            e.stopPropagation(); // keep the WebUI's page-wide drop (paste infotext from PNG) out of it
            self.useFile(f);
        });
    };
})(window.InitEdit = window.InitEdit || {});
