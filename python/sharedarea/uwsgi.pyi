import types

module: types.ModuleType
