// Admin pages: the copy button next to a one-time secret. Without JavaScript the button stays hidden and the
// secret can be selected and copied by hand.
document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field || !navigator.clipboard) {
        return;
    }

    button.hidden = false;
    button.addEventListener("click", function () {
        navigator.clipboard.writeText(field.value).then(function () {
            button.textContent = "Copied";
        }, function () {
            field.select();
        });
    });
});
