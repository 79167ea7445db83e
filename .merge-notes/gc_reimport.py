"""Move names from one module's import to another's, in every file given."""
import re, sys
def move(path, src, names, dst):
    s = open(path).read()
    pat = re.compile(r"from %s import (\([^)]*\)|[^\n]*)\n" % re.escape(src))
    moved = []
    def fix(m):
        body = m.group(1).strip("()")
        items = [i.strip() for i in body.replace("\n", " ").split(",") if i.strip()]
        keep = [i for i in items if i not in names]
        moved.extend(i for i in items if i in names)
        if not keep:
            return ""
        return f"from {src} import {', '.join(keep)}\n"
    s2 = pat.sub(fix, s)
    if moved:
        # put the new import right after the first "from shared" import line
        line = f"from {dst} import {', '.join(sorted(set(moved)))}\n"
        if re.search(r"^from %s import" % re.escape(dst), s2, re.M):
            s2 = re.sub(r"^from %s import ([^\n(]*)\n" % re.escape(dst),
                        lambda m: f"from {dst} import {', '.join(sorted(set([x.strip() for x in m.group(1).split(',')] + moved)))}\n", s2, count=1, flags=re.M)
        else:
            fut = s2.find("from __future__ import annotations\n")
            start = fut + 1 if fut >= 0 else 0
            i = s2.find("\nfrom shared", start)
            if i < 0:
                i = s2.find("\nimport ", start)
            if i < 0:
                i = s2.find("\nfrom ", start)
            s2 = s2[: i + 1] + line + s2[i + 1 :]
        open(path, "w").write(s2)
        print(path, moved)
if __name__ == "__main__":
    src, dst, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    for p in sys.argv[4:]:
        move(p, src, names, dst)
