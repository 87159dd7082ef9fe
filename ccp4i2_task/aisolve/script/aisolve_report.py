"""CCP4i2 report of the aisolve task: figures of merit and every atom with its element confidence.

Reads the task's program.xml (R1, wR2, GooF, warnings, Atoms/Atom with label, element,
confidence and second-best element).
"""
try:  # CCP4i2 3.x
    from ccp4i2.report import Report
except ImportError:  # classic
    from report.CCP4ReportParser import Report


class aisolve_report(Report):  # noqa: N801 - CCP4i2 names the class after the task
    TASKNAME = "aisolve"
    RUNNING = False
    USEPROGRAMXML = True

    def __init__(self, xmlnode=None, jobInfo=None, **kw):
        Report.__init__(self, xmlnode=xmlnode, jobInfo=jobInfo or {}, **kw)
        if xmlnode is None:
            return
        results = self.addResults()
        figures = [(name, xmlnode.findtext(name)) for name in ("R1", "WR2", "GOOF")]
        results.append("<p>aisolve: " + ("solved" if xmlnode.findtext("solved") == "True" else "not solved")
                       + "; " + ", ".join(f"{n} {v}" for n, v in figures if v) + "</p>")
        for w in xmlnode.findall("Warning"):
            results.append(f"<p>warning: {w.text}</p>")
        atoms = xmlnode.findall("Atoms/Atom")
        if atoms:
            fold = results.addFold(label="Atoms and element confidence", initiallyOpen=True)
            table = fold.addTable()
            for title, key in (("Atom", "label"), ("Element", "element"), ("Confidence", "confidence"),
                               ("Second best", "second")):
                table.addData(title=title, data=[a.get(key) for a in atoms])
