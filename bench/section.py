"""One generated section of BENCHMARKS.md, between its markers (`<!-- section ID: ... -->` and
`<!-- end of section ID -->`), written by the bench script that owns it (bench/contract-v3.sh,
bench/gate.sh, bench/cold-start.sh) so that bench/run.sh's full report and a script run alone
agree."""


def replace_section(path, sid, section, before=None):
    """Replaces section `sid` of the file at `path` with `section` (its markers included). A file
    without that section gets it before the first line starting with `before`, else at the end."""
    begin, end = f"<!-- section {sid}:", f"<!-- end of section {sid} -->"
    text = open(path).read()
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop >= 0:
        text = text[:start] + section + text[stop + len(end + "\n"):]
    else:
        at = text.find("\n" + before) + 1 if before else 0
        if before and at > 0:
            text = text[:at] + section + "\n" + text[at:]
        else:
            text = text.rstrip("\n") + "\n\n" + section
    open(path, "w").write(text)
    print(section)
