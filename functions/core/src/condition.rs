//! Policy conditions in CEL (Common Expression Language): compiled when the config loads,
//! evaluated per request against the verified subject and the request.
//!
//! One evaluator for the Lambda and the Worker: the `cel` crate (cel-rust) with its Pratt parser
//! and its standard library, no regular expressions, no clock. Bounds: an expression is at most
//! 4 KiB; the parser limits recursion and node count; a check of our own (an iterative walk, so it
//! cannot overflow itself) refuses expressions nested deeper than [`MAX_DEPTH`] and comprehensions
//! nested in comprehensions, so evaluation never recurses deeply and no loop runs over a loop.
//! Whatever a condition says, its cost is linear in the size of the request.
//!
//! Variables (ARCHITECTURE.md "Config"):
//! - `subject`: `cluster`, `namespace`, `service_account`, `sub` (the ServiceAccount token's
//!   `sub`), `claims` (the whole verified claim set; on a replacement, the TxToken's claims);
//! - `request`: `scope` (list of string), `request_details` and `request_context` (maps),
//!   `workload` (the `req_wl` being issued: the claimed one, else the subject's own),
//!   `replacement` (bool), `actor` (on a replacement, the actor's subject map, else null).
//!
//! Only `true` passes: an evaluation error (a missing key, a wrong type) or any other result is
//! false, with a debug line naming the policy.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use cel::{Context, Env, IdedExpr, Value};
use serde_json::{Map, Value as Json};

use crate::identity::Subject;

/// Longest condition accepted, bytes.
pub const MAX_CONDITION_LEN: usize = 4 * 1024;
/// Deepest expression tree accepted.
const MAX_DEPTH: usize = 64;
/// Most nodes in one expression.
const MAX_NODES: usize = 2_000;

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    expr: IdedExpr,
    /// Does it read `subject.claims`? (The claims are converted only then.)
    reads_claims: bool,
}

/// Why a condition does not compile: a fixed phrase and where, never the expression's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub reason: &'static str,
    /// 1-based line and column within the expression, when the parser gives them.
    pub at: Option<(usize, usize)>,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some((1, col)) => write!(f, "{} (column {col})", self.reason),
            Some((line, col)) => write!(
                f,
                "{} (line {line}, column {col} of the condition)",
                self.reason
            ),
            None => f.write_str(self.reason),
        }
    }
}

/// The standard library, without regular expressions or time: built once.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

impl Condition {
    /// Compiles `source`: the 4 KiB bound, the parser (its syntax errors give a column), our
    /// depth and comprehension limits, and the result type where it is known without running
    /// (a literal, arithmetic, a list or a map is never a bool).
    pub fn compile(source: &str) -> Result<Condition, CompileError> {
        let fail = |reason| CompileError { reason, at: None };
        if source.trim().is_empty() {
            return Err(fail("is empty"));
        }
        if source.len() > MAX_CONDITION_LEN {
            return Err(fail("is longer than 4 KiB"));
        }
        let expr = cel::parser::PrattParser::new()
            .max_recursion_depth(MAX_DEPTH as u16)
            .max_expression_node_count(MAX_NODES)
            .parse(source)
            .map_err(|errors| {
                let at = errors.errors.first().and_then(|e| {
                    let (line, col) = e.pos;
                    (line >= 1 && col >= 0).then(|| (line as usize, col as usize + 1))
                });
                CompileError {
                    reason: "is not a valid CEL expression",
                    at,
                }
            })?;
        let reads_claims = check(&expr)?;
        Ok(Condition { expr, reads_claims })
    }

    /// Does evaluating it need `subject.claims`?
    pub fn reads_claims(&self) -> bool {
        self.reads_claims
    }

    /// Evaluates against `facts`: `Ok(true)` passes; `Ok(false)` and errors do not. An error is
    /// a fixed phrase: the crate's own messages may quote request values.
    pub fn evaluate(&self, facts: &Activation<'_>) -> Result<bool, &'static str> {
        match Value::resolve(&self.expr, facts.context()) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(_) => Err("the result is not a bool"),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// What kind of evaluation error, in words that quote nothing.
fn describe(e: &cel::ExecutionError) -> &'static str {
    use cel::ExecutionError as X;
    match e {
        X::NoSuchKey(_) => "a key is missing",
        X::UndeclaredReference(_) => "an unknown variable or function",
        X::DivisionByZero(_) | X::RemainderByZero(_) => "a division by zero",
        X::FunctionError { .. } => "a function failed",
        X::InvalidArgumentCount { .. } | X::MissingArgumentOrTarget => {
            "a function has the wrong arguments"
        }
        X::UnsupportedTargetType { .. }
        | X::NotSupportedAsMethod { .. }
        | X::UnsupportedKeyType(_)
        | X::UnexpectedType { .. }
        | X::NoSuchOverload(_)
        | X::ValuesNotComparable(..)
        | X::UnsupportedIndex(..) => "a value has the wrong type",
        _ => "the evaluation failed",
    }
}

/// Our bounds on a parsed expression (an iterative walk: it cannot overflow itself); whether it
/// reads `subject.claims`.
fn check(expr: &IdedExpr) -> Result<bool, CompileError> {
    use cel::common::ast::{EntryExpr, Expr, LiteralValue};
    let fail = |reason| CompileError { reason, at: None };
    let mut reads_claims = false;
    let mut stack: Vec<(&IdedExpr, usize, bool)> = vec![(expr, 1, false)];
    while let Some((e, depth, in_loop)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(fail("is nested too deeply"));
        }
        let next = depth + 1;
        match &e.expr {
            Expr::Call(c) => {
                stack.extend(c.target.iter().map(|t| (t.as_ref(), next, in_loop)));
                stack.extend(c.args.iter().map(|a| (a, next, in_loop)));
            }
            Expr::Comprehension(c) => {
                if in_loop {
                    return Err(fail("nests a comprehension in a comprehension"));
                }
                stack.push((&c.iter_range, next, false));
                for x in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    stack.push((x, next, true));
                }
            }
            Expr::List(l) => stack.extend(l.elements.iter().map(|x| (x, next, in_loop))),
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        stack.push((&me.key, next, in_loop));
                        stack.push((&me.value, next, in_loop));
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        stack.push((&f.value, next, in_loop));
                    }
                }
            }
            Expr::Select(s) => {
                if s.field == "claims"
                    && matches!(&s.operand.expr, Expr::Ident(name) if name == "subject")
                {
                    reads_claims = true;
                }
                stack.push((&s.operand, next, in_loop));
            }
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    let never_bool = match &expr.expr {
        Expr::Literal(LiteralValue::Boolean(_)) => false,
        Expr::Literal(_) | Expr::List(_) | Expr::Map(_) | Expr::Struct(_) => true,
        Expr::Call(c) => matches!(
            c.func_name.as_str(),
            "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "-_"
        ),
        _ => false,
    };
    if never_bool {
        return Err(fail("does not evaluate to a bool"));
    }
    Ok(reads_claims)
}

/// What a condition may read about a request (borrowed; converted once, when the first
/// condition is evaluated).
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub subject: &'a Subject,
    /// The verified claim set (the SA token's; on a replacement the TxToken's), when a condition
    /// reads it.
    pub claims: Option<&'a Json>,
    pub scope: &'a [String],
    pub request_details: &'a Map<String, Json>,
    pub request_context: &'a Map<String, Json>,
    pub workload: &'a str,
    pub replacement: bool,
    pub actor: Option<&'a Subject>,
}

/// The variables of one request, converted once and shared by every condition evaluated.
pub struct Activation<'a> {
    context: Context<'a, 'a>,
}

impl std::fmt::Debug for Activation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Activation")
    }
}

impl<'a> Activation<'a> {
    pub fn new(facts: &Facts<'a>) -> Self {
        let mut context = Context::with_env(Arc::clone(env()));
        context.add_variable_as_val("subject", subject_val(facts.subject, facts.claims));
        let mut request: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::with_capacity(6);
        let list: Vec<Box<dyn Val + 'a>> = facts
            .scope
            .iter()
            .map(|s| Box::new(CelString::from(s.as_str())) as Box<dyn Val + 'a>)
            .collect();
        request.insert(key("scope"), Box::new(CelList::from(list)));
        request.insert(key("request_details"), map_val(facts.request_details));
        request.insert(key("request_context"), map_val(facts.request_context));
        request.insert(key("workload"), Box::new(CelString::from(facts.workload)));
        request.insert(
            key("replacement"),
            Box::new(CelBool::from(facts.replacement)),
        );
        request.insert(
            key("actor"),
            match facts.actor {
                Some(actor) => subject_val(actor, None),
                None => Box::new(CelNull),
            },
        );
        context.add_variable_as_val("request", Box::new(CelMap::from(request)));
        Activation { context }
    }

    fn context(&self) -> &Context<'a, 'a> {
        &self.context
    }
}

fn key(name: &'static str) -> CelMapKey<'static> {
    CelMapKey::String(CelString::from(name))
}

fn subject_val<'a>(s: &'a Subject, claims: Option<&'a Json>) -> Box<dyn Val + 'a> {
    let mut m: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::with_capacity(5);
    m.insert(
        key("cluster"),
        Box::new(CelString::from(s.cluster.as_str())),
    );
    m.insert(
        key("namespace"),
        Box::new(CelString::from(s.namespace.as_str())),
    );
    m.insert(
        key("service_account"),
        Box::new(CelString::from(s.service_account.as_str())),
    );
    m.insert(key("sub"), Box::new(CelString::from(s.k8s_sub.as_str())));
    m.insert(
        key("claims"),
        match claims {
            Some(c) => json_val(c),
            None => Box::new(CelMap::from(HashMap::new())),
        },
    );
    Box::new(CelMap::from(m))
}

fn map_val<'a>(map: &'a Map<String, Json>) -> Box<dyn Val + 'a> {
    let m: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = map
        .iter()
        .map(|(k, v)| (CelMapKey::String(CelString::from(k.as_str())), json_val(v)))
        .collect();
    Box::new(CelMap::from(m))
}

/// A JSON value as a CEL value, borrowing its strings. Numbers: integers as `int` (or `uint`
/// beyond `i64`), others as `double`.
fn json_val(v: &Json) -> Box<dyn Val + '_> {
    match v {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Json::String(s) => Box::new(CelString::from(s.as_str())),
        Json::Array(a) => Box::new(CelList::from(a.iter().map(json_val).collect::<Vec<_>>())),
        Json::Object(o) => map_val(o),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn err(source: &str) -> CompileError {
        Condition::compile(source).unwrap_err()
    }

    #[test]
    fn compile_errors_say_where_never_what() {
        let e = err("subject.namespace == ");
        assert_eq!(e.reason, "is not a valid CEL expression");
        assert!(e.at.is_some(), "{e:?}");
        let e = err("subject.namespace ==\n  \"a\" &&& true");
        assert_eq!(e.at.map(|(line, _)| line), Some(2), "{e:?}");
        assert!(e.to_string().contains("line 2, column"), "{e}");
        let secret = "c2VjcmV0LWluLWEtY29uZGl0aW9u";
        let e = err(&format!("subject.sub == '{secret}' &&"));
        assert!(!e.to_string().contains(secret), "{e}");
        assert_eq!(err("  ").reason, "is empty");
        assert_eq!(
            err(&format!("true || {}", "x".repeat(4100))).reason,
            "is longer than 4 KiB"
        );
        for never_bool in ["1 + 2", "'text'", "[true]", "{'a': true}", "-1"] {
            assert_eq!(
                err(never_bool).reason,
                "does not evaluate to a bool",
                "{never_bool}"
            );
        }
        Condition::compile("request.replacement").unwrap();
        Condition::compile(&format!("true || {}", "x".repeat(4000))).unwrap();
    }

    fn chain(op: &str, n: usize) -> String {
        std::iter::repeat_n("1", n).collect::<Vec<_>>().join(op) + " == 1"
    }

    fn hostile() -> Vec<(&'static str, String)> {
        vec![
            ("+ chain", chain(" + ", 1000)),
            ("< chain", chain(" < ", 1000)),
            (
                "parentheses",
                format!("{}true{}", "(".repeat(2000), ")".repeat(2000)),
            ),
            ("not", format!("{}true", "!".repeat(2000))),
            ("negation", format!("{}1 == 1", "-".repeat(2000))),
            (
                "lists",
                format!("{}1{} == 1", "[".repeat(1500), "]".repeat(1500)),
            ),
        ]
    }

    fn cases_by_name(name: &str) -> (&'static str, String) {
        hostile().into_iter().find(|(n, _)| *n == name).unwrap()
    }

    /// Expressions that would make the evaluator recurse deeply or loop over loops are refused
    /// when the config loads; every 4 KiB hostile shape compiles or fails without crashing.
    #[test]
    fn hostile_expressions_are_bounded() {
        let cases = hostile();
        let subject = Subject {
            cluster: "c".into(),
            namespace: "n".into(),
            service_account: "s".into(),
            k8s_sub: "system:serviceaccount:n:s".into(),
            exp: 0,
            workload_id: "c:n:s".into(),
            claims: None,
        };
        let empty = Map::new();
        let facts = Facts {
            subject: &subject,
            claims: None,
            scope: &[],
            request_details: &empty,
            request_context: &empty,
            workload: "w",
            replacement: false,
            actor: None,
        };
        for (name, source) in cases {
            let source = &source[..source.len().min(MAX_CONDITION_LEN)];
            match Condition::compile(source) {
                // Deep trees are refused when the config loads ...
                Err(e) => assert!(
                    ["is nested too deeply", "is not a valid CEL expression"].contains(&e.reason),
                    "{name}: {e:?}"
                ),
                // ... and what compiles is shallow (parentheses add no node): it evaluates.
                Ok(c) => {
                    let _ = c.evaluate(&Activation::new(&facts));
                }
            }
        }
        for deep in ["+ chain", "< chain", "lists"] {
            let (_, source) = cases_by_name(deep);
            assert!(Condition::compile(&source).is_err(), "{deep} compiled");
        }
        assert_eq!(
            err("request.scope.all(s, request.scope.exists(t, t == s))").reason,
            "nests a comprehension in a comprehension"
        );
        Condition::compile("request.scope.all(s, s.startsWith('orders:'))").unwrap();
        // A long flat && chain is fine (CEL balances it).
        let ands = std::iter::repeat_n("request.replacement", 150)
            .collect::<Vec<_>>()
            .join(" && ");
        Condition::compile(&ands).unwrap();
    }

    #[test]
    fn claims_are_read_only_when_named() {
        assert!(
            Condition::compile("subject.claims.x == 1")
                .unwrap()
                .reads_claims()
        );
        assert!(
            Condition::compile("has(subject.claims.x)")
                .unwrap()
                .reads_claims()
        );
        assert!(
            !Condition::compile("subject.namespace == 'a'")
                .unwrap()
                .reads_claims()
        );
    }

    /// The cost of a condition grows linearly with the request (a comprehension over the whole
    /// request_details), never faster.
    #[test]
    fn cost_is_linear_in_the_request() {
        let cond = Condition::compile("request.request_details.all(k, k.startsWith('k'))").unwrap();
        let subject = Subject {
            cluster: "c".into(),
            namespace: "n".into(),
            service_account: "s".into(),
            k8s_sub: "system:serviceaccount:n:s".into(),
            exp: 0,
            workload_id: "c:n:s".into(),
            claims: None,
        };
        let time = |n: usize| {
            let details: Map<String, Json> =
                (0..n).map(|i| (format!("k{i}"), Json::from(i))).collect();
            let empty = Map::new();
            let started = std::time::Instant::now();
            for _ in 0..5 {
                let facts = Facts {
                    subject: &subject,
                    claims: None,
                    scope: &[],
                    request_details: &details,
                    request_context: &empty,
                    workload: "w",
                    replacement: false,
                    actor: None,
                };
                assert_eq!(cond.evaluate(&Activation::new(&facts)), Ok(true));
            }
            started.elapsed()
        };
        let small = time(1_000);
        let large = time(4_000);
        // 4x the input: well under 16x the time (quadratic), with room for a noisy machine.
        assert!(
            large < small * 10,
            "1000 keys {small:?}, 4000 keys {large:?}"
        );
    }
}
