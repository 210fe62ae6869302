"""test_man.py — the man pages cannot drift from the program: every
subcommand main.c dispatches and every long option a subcommand's parser
accepts (read from the C sources, not from the help table) must appear in
sluice(1) and in that subcommand's --help; every job key of the
configuration table (src/core/job.c) must appear in both too; sluice-sql(7)
must carry every section of docs/sql.md; groff must render both pages
without a warning.

Run: python3 -m pytest -q tests/package/test_man.py (part of make test).
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice"))
MAN = os.path.join(ROOT, "build", "man")  # make man (the default build)
CLI = os.path.join(ROOT, "src", "cli")

# The functions that parse each subcommand's arguments (load() in sql_cmd.c
# parses for `run FILE.sql` and `explain`).
PARSERS = {"cli_run": ["run"], "cli_gen": ["gen"], "cli_keygen": ["keygen"],
           "cli_savepoint": ["savepoint"], "load": ["run", "explain"],
           "cli_sink_task": ["sink-task"], "cli_avro_schema": ["avro-schema"]}


def read(path):
    with open(path) as f:
        return f.read()


def functions(text):
    """C function name -> body, for top-level definitions."""
    out = {}
    for m in re.finditer(r"^(?:static )?int (\w+)\([^)]*\)\n\{\n(.*?)^\}", text, re.M | re.S):
        out[m.group(1)] = m.group(2)
    return out


def parser_options():
    """subcommand -> long options its parser accepts, from the C sources."""
    opts = {}
    for f in os.listdir(CLI):
        if not f.endswith(".c"):
            continue
        for name, body in functions(read(os.path.join(CLI, f))).items():
            if name not in PARSERS:
                continue
            found = set(re.findall(r'\{"([\w-]+)", (?:required|no|optional)_argument', body))
            found |= set(re.findall(r'"--([\w-]+)=?"', body))
            for cmd in PARSERS[name]:
                opts.setdefault(cmd, set()).update(found)
    return opts


def dispatched_commands():
    return re.findall(r'!strcmp\(cmd, "([\w-]+)"\)\) return cli_',
                      read(os.path.join(CLI, "main.c")))


def job_keys():
    return re.findall(r'\{\.key = "([\w.]+)"', read(os.path.join(ROOT, "src/core/job.c")))


@pytest.fixture(scope="module")
def man1():
    r = subprocess.run([BIN, "--man", "2026-01-01"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def helptext(*args):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def roff_opt(opt):
    return "\\fB\\-\\-" + opt.replace("-", "\\-") + "\\fR"


def test_the_source_scan_finds_the_parsers():
    """Guards the scan itself: a refactoring that hides the parsers from it
    must fail here, not pass silently."""
    opts = parser_options()
    assert set(dispatched_commands()) == {"run", "gen", "explain", "keygen", "savepoint",
                                          "sink-task", "avro-schema"}
    assert {"events", "checkpoint-dir", "from-scratch", "set", "quiet"} <= opts["run"]
    assert {"out", "seed", "set"} <= opts["gen"]
    assert "id" in opts["keygen"]
    assert "set" in opts["explain"]


def test_every_subcommand_is_in_the_man_page_and_help(man1):
    top = helptext("--help")
    for cmd in dispatched_commands():
        assert '.SS "sluice %s"' % cmd in man1, cmd
        assert re.search(r"^  %s " % cmd, top, re.M), cmd
        assert helptext(cmd, "--help").startswith("usage: sluice " + cmd)
    assert '.SS "sluice \\-\\-version"' in man1


def test_every_parser_option_is_in_the_man_page_and_help(man1):
    missing = []
    for cmd, opts in sorted(parser_options().items()):
        text = helptext(cmd, "--help")
        section = man1.split('.SS "sluice %s"' % cmd)[1].split(".SS")[0]
        for o in sorted(opts):
            if roff_opt(o) not in section:
                missing.append("sluice(1) %s --%s" % (cmd, o))
            if not re.search(r"^  --%s\b" % re.escape(o), text, re.M):
                missing.append("sluice %s --help: --%s" % (cmd, o))
    assert not missing


def telecom_keys():
    return re.findall(r'strcmp\(key, "([\w.]+)"\)', read(os.path.join(CLI, "job_telecom.c")))


def test_every_telecom_key_is_in_the_man_page_and_help(man1):
    """The keys telecom_set() accepts (--set NAME=VALUE of telecom-age)."""
    keys = telecom_keys()
    assert {"events", "k", "k.fold", "dp.epsilon"} <= set(keys)
    text = " ".join(helptext("run", "--help").split())
    section = man1.split('.SS "sluice run"')[1].split(".SS")[0]
    section = re.sub(r"\\f[BIRP]", "", section).replace("\\-", "-")
    missing = [k for k in keys
               if not re.search(r"(\[|\b)%s[\]=]" % re.escape(k), text)
               or not re.search(r"(\[|\b)%s[\]=]" % re.escape(k), section)]
    assert not missing


def test_every_job_key_is_in_the_man_page_and_help(man1):
    keys = job_keys()
    assert len(keys) >= 20  # the scan found the table
    section = man1.split('.SH "JOB KEYS"')[1].split(".SH")[0]
    run_help = helptext("run", "--help")
    flat = " ".join(run_help.split())
    for k in keys:
        assert ".TP\n\\fB%s\\fR\n" % k.replace("-", "\\-") in section, k
        assert re.search(r"(^|[ ,])%s(,|$| )" % re.escape(k), flat), k


def test_the_built_man_page_is_current(man1):
    """build/man/sluice.1 (make man) is what the program prints now."""
    subprocess.run(["make", "-s", "-C", ROOT, "--no-print-directory", "man"], check=True)
    path = os.path.join(MAN, "sluice.1")
    page = read(path)
    date = re.search(r'^\.TH SLUICE 1 "([^"]*)"', page, re.M).group(1)
    r = subprocess.run([BIN, "--man", date], capture_output=True, text=True, check=True)
    assert page == r.stdout


def sql_page():
    subprocess.run(["make", "-s", "-C", ROOT, "--no-print-directory", "man"], check=True)
    path = os.path.join(MAN, "sluice-sql.7")
    return read(path)


def test_sql_page_has_every_section_of_the_doc():
    page = sql_page()
    doc = read(os.path.join(ROOT, "docs", "sql.md"))
    for level, title in re.findall(r"^(##+) (.+)$", doc, re.M):
        macro = ".SH" if level == "##" else ".SS"
        want = title.upper() if macro == ".SH" else title
        assert '%s "%s"' % (macro, want) in page, title
    for fn in re.findall(r"^\| `([A-Z_]+)\(", doc, re.M):
        assert "\\fB" + fn + "(" in page, fn


def render(path):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_STDERR="1")
    r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True,
                       text=True, env=env)
    return r


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db not installed")
@pytest.mark.parametrize("page", ["sluice.1", "sluice-sql.7"])
def test_pages_render_without_warnings(page):
    sql_page()
    r = render(os.path.join(MAN, page))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # no Markdown left over: emphasis, links, fences
    assert not re.search(r"\*\*|\]\(|```", r.stdout)
    assert len(r.stdout.splitlines()) > 100
