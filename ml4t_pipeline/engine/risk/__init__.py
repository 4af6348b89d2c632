"""Risk on the order path: rules decide, the manager merges, the protective levels trigger.

- `context.py`  what a rule sees and says: RiskContext, RiskDecision, RiskRule, BaseRule;
- `rules.py`    the built-in rules;
- `manager.py`  RiskManager: the hooks the engine calls and how decisions merge;
- `levels.py`   ProtectiveLevels: the stop / take-profit levels and what they trigger;
- `state.py`    RiskState: the per-asset columns carried from bar to bar and into a chained run.
"""
