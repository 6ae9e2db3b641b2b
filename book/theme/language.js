// The book comes in English (book/book/) and Korean (book/book/ko/, built from
// book/po/ko.po). Every page gets a link to the same page in the other language,
// in the menu bar: the two books have the same pages under the same names.
(function () {
    const korean = document.documentElement.lang === "ko";
    const buttons = document.querySelector(".right-buttons");
    if (!buttons) {
        return;
    }
    const page = window.location.pathname.split("/").pop() || "index.html";
    const link = document.createElement("a");
    link.className = "language-switch";
    link.href = korean ? "../" + page : "ko/" + page;
    link.textContent = korean ? "English" : "한국어";
    link.lang = korean ? "en" : "ko";
    link.title = korean ? "Read this page in English" : "이 페이지를 한국어로 읽기";
    buttons.prepend(link);
})();
