// A program's output (a ```text,output block) is shown as the program printed it,
// however wide, so it wraps as a terminal would rather than scroll; a line that
// wraps goes on 4 columns further in than it started, so that it reads as one
// line. check-book lets only these blocks hold lines wider than the code box
// (src/workshop/codebox.rs).
(function () {
    for (const code of document.querySelectorAll("pre > code.output")) {
        const lines = code.textContent.replace(/\n$/, "").split("\n");
        code.textContent = "";
        lines.forEach((text, i) => {
            const line = document.createElement("span");
            const hang = text.length - text.trimStart().length + 4;
            line.className = "output-line";
            line.style.paddingLeft = hang + "ch";
            line.style.textIndent = -hang + "ch";
            line.textContent = text;
            code.append(line);
            if (i < lines.length - 1) {
                code.append("\n");
            }
        });
    }
})();
