"""Stand-in for Olex2's `olexFunctions` module and its OV object."""
from _state import STATE


class OlexFunctions:
    def registerFunction(self, fn, flag=False, namespace=""):
        STATE.functions[f"spy.{namespace}.{fn.__name__}" if namespace else f"spy.{fn.__name__}"] = fn

    def File(self):
        STATE.save()
        return STATE.ins_path

    def FileFull(self):
        return STATE.ins_path

    def HKLSrc(self):
        return STATE.hkl_path

    def GetParam(self, name, default=None):
        return STATE.params.get(name, default)

    def SetParam(self, name, value):
        STATE.params[name] = value

    def cmd(self, macro):
        STATE.macro(macro)


OV = OlexFunctions()
