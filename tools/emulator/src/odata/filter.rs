//! The `$filter` subset Dataverse clients here use: comparisons, `and`/`or`/`not`, parentheses,
//! `contains`/`startswith`/`endswith`, literals (strings with `''` escaping, integers, GUIDs,
//! date-times, `null`, booleans). String comparison is case-insensitive, as in Dataverse.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::errors::DvError;

/// A literal operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// Unquoted integer.
    Int(i64),
    /// Quoted string, `''` already unescaped.
    Str(String),
    /// Unquoted GUID (lower-cased).
    Guid(String),
    /// Unquoted date-time or date.
    DateTime(String),
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
}

/// String functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `contains(p,'x')`
    Contains,
    /// `startswith(p,'x')`
    StartsWith,
    /// `endswith(p,'x')`
    EndsWith,
}

/// Parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `a and b`
    And(Box<Expr>, Box<Expr>),
    /// `a or b`
    Or(Box<Expr>, Box<Expr>),
    /// `not a`
    Not(Box<Expr>),
    /// `property op literal` (a literal on the left is normalised to the right).
    Cmp {
        /// Property name.
        prop: String,
        /// Operator.
        op: CmpOp,
        /// Literal operand.
        lit: Literal,
    },
    /// `func(property,'text')`
    Call {
        /// Function.
        func: Func,
        /// Property name.
        prop: String,
        /// Argument.
        arg: String,
    },
}

/// Property types as `$filter` sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropType {
    /// Edm.String
    String,
    /// Edm.Int32 / Int64 (choices too)
    Int,
    /// Edm.Guid
    Guid,
    /// Edm.Boolean
    Bool,
    /// Edm.DateTimeOffset
    DateTime,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Comma,
    Str(String),
    Word(String),
}

struct Lexer<'a> {
    text: &'a str,
    chars: Vec<char>,
}

fn syntax_error(pos: usize, text: &str) -> DvError {
    DvError::syntax(format!("Syntax error at position {pos} in '{text}'."))
}

impl<'a> Lexer<'a> {
    fn tokens(text: &'a str) -> Result<Vec<(Tok, usize)>, DvError> {
        let lexer = Lexer {
            text,
            chars: text.chars().collect(),
        };
        lexer.run()
    }

    fn run(&self) -> Result<Vec<(Tok, usize)>, DvError> {
        let mut out = Vec::new();
        let mut i = 0;
        let n = self.chars.len();
        while i < n {
            let c = self.chars[i];
            match c {
                c if c.is_whitespace() => i += 1,
                '(' => {
                    out.push((Tok::Open, i));
                    i += 1;
                }
                ')' => {
                    out.push((Tok::Close, i));
                    i += 1;
                }
                ',' => {
                    out.push((Tok::Comma, i));
                    i += 1;
                }
                '\'' => {
                    let start = i;
                    let mut s = String::new();
                    i += 1;
                    loop {
                        match self.chars.get(i) {
                            // OData reports the position where the lexer ran out of text.
                            None => {
                                return Err(DvError::syntax(format!(
                                    "There is an unterminated literal at position {n} in '{}'.",
                                    self.text
                                )));
                            }
                            Some('\'') if self.chars.get(i + 1) == Some(&'\'') => {
                                s.push('\'');
                                i += 2;
                            }
                            Some('\'') => {
                                i += 1;
                                break;
                            }
                            Some(&other) => {
                                s.push(other);
                                i += 1;
                            }
                        }
                    }
                    out.push((Tok::Str(s), start));
                }
                _ => {
                    let start = i;
                    let mut w = String::new();
                    while let Some(&ch) = self.chars.get(i) {
                        if ch.is_whitespace() || matches!(ch, '(' | ')' | ',' | '\'') {
                            break;
                        }
                        w.push(ch);
                        i += 1;
                    }
                    out.push((Tok::Word(w), start));
                }
            }
        }
        Ok(out)
    }
}

/// Parses a decoded `$filter` value.
pub fn parse(text: &str) -> Result<Expr, DvError> {
    let toks = Lexer::tokens(text)?;
    let mut p = Parser { toks, pos: 0, text };
    let expr = p.or()?;
    if p.pos < p.toks.len() {
        return Err(p.error());
    }
    Ok(expr)
}

enum Operand {
    Prop(String),
    Lit(Literal),
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self) -> DvError {
        let at = self
            .toks
            .get(self.pos)
            .map(|t| t.1)
            .unwrap_or_else(|| self.text.chars().count());
        syntax_error(at, self.text)
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.toks.get(self.pos), Some((Tok::Word(w), _)) if w == word)
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), DvError> {
        match self.toks.get(self.pos) {
            Some((t, _)) if t == tok => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.error()),
        }
    }

    fn or(&mut self) -> Result<Expr, DvError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, DvError> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, DvError> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, DvError> {
        if matches!(self.toks.get(self.pos), Some((Tok::Open, _))) {
            self.pos += 1;
            let e = self.or()?;
            self.expect(&Tok::Close)?;
            return Ok(e);
        }
        if let Some(func) = self.function_name() {
            return self.call(func);
        }
        let left = self.operand()?;
        let op = self.operator()?;
        let right = self.operand()?;
        match (left, right) {
            (Operand::Prop(prop), Operand::Lit(lit)) => Ok(Expr::Cmp { prop, op, lit }),
            (Operand::Lit(lit), Operand::Prop(prop)) => Ok(Expr::Cmp {
                prop,
                op: flip(op),
                lit,
            }),
            _ => Err(DvError::syntax(format!(
                "The emulator supports only comparisons between a property and a literal in '{}'.",
                self.text
            ))),
        }
    }

    fn function_name(&self) -> Option<Func> {
        let Some((Tok::Word(w), _)) = self.toks.get(self.pos) else {
            return None;
        };
        if !matches!(self.toks.get(self.pos + 1), Some((Tok::Open, _))) {
            return None;
        }
        match w.as_str() {
            "contains" => Some(Func::Contains),
            "startswith" => Some(Func::StartsWith),
            "endswith" => Some(Func::EndsWith),
            _ => None,
        }
    }

    fn call(&mut self, func: Func) -> Result<Expr, DvError> {
        self.pos += 2;
        let Operand::Prop(prop) = self.operand()? else {
            return Err(self.error());
        };
        self.expect(&Tok::Comma)?;
        let arg = match self.toks.get(self.pos) {
            Some((Tok::Str(s), _)) => s.clone(),
            _ => return Err(self.error()),
        };
        self.pos += 1;
        self.expect(&Tok::Close)?;
        Ok(Expr::Call { func, prop, arg })
    }

    fn operator(&mut self) -> Result<CmpOp, DvError> {
        let op = match self.toks.get(self.pos) {
            Some((Tok::Word(w), _)) => match w.as_str() {
                "eq" => CmpOp::Eq,
                "ne" => CmpOp::Ne,
                "gt" => CmpOp::Gt,
                "ge" => CmpOp::Ge,
                "lt" => CmpOp::Lt,
                "le" => CmpOp::Le,
                _ => return Err(self.error()),
            },
            _ => return Err(self.error()),
        };
        self.pos += 1;
        Ok(op)
    }

    fn operand(&mut self) -> Result<Operand, DvError> {
        let out = match self.toks.get(self.pos) {
            Some((Tok::Str(s), _)) => Operand::Lit(Literal::Str(s.clone())),
            Some((Tok::Word(w), _)) => classify(w).ok_or_else(|| self.error())?,
            _ => return Err(self.error()),
        };
        self.pos += 1;
        Ok(out)
    }
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        other => other,
    }
}

/// True for the 8-4-4-4-12 hex form.
pub fn is_guid(w: &str) -> bool {
    let parts: Vec<&str> = w.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn classify(w: &str) -> Option<Operand> {
    let lit = match w {
        "null" => Literal::Null,
        "true" => Literal::Bool(true),
        "false" => Literal::Bool(false),
        _ if is_guid(w) => Literal::Guid(w.to_ascii_lowercase()),
        _ if w.parse::<i64>().is_ok() => Literal::Int(w.parse().ok()?),
        _ if w.len() >= 10
            && w.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && w.as_bytes()[4] == b'-' =>
        {
            Literal::DateTime(w.to_string())
        }
        _ if w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            return Some(Operand::Prop(w.to_string()));
        }
        _ => return None,
    };
    Some(Operand::Lit(lit))
}

fn edm(t: PropType) -> &'static str {
    match t {
        PropType::String => "Edm.String",
        PropType::Int => "Edm.Int32",
        PropType::Guid => "Edm.Guid",
        PropType::Bool => "Edm.Boolean",
        PropType::DateTime => "Edm.DateTimeOffset",
    }
}

fn lit_type(lit: &Literal) -> Option<PropType> {
    match lit {
        Literal::Null => None,
        Literal::Bool(_) => Some(PropType::Bool),
        Literal::Int(_) => Some(PropType::Int),
        Literal::Str(_) => Some(PropType::String),
        Literal::Guid(_) => Some(PropType::Guid),
        Literal::DateTime(_) => Some(PropType::DateTime),
    }
}

fn op_name(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "Equal",
        CmpOp::Ne => "NotEqual",
        CmpOp::Gt => "GreaterThan",
        CmpOp::Ge => "GreaterThanOrEqual",
        CmpOp::Lt => "LessThan",
        CmpOp::Le => "LessThanOrEqual",
    }
}

/// Checks property names and operand types; `lookup` gives a property's type, `None` if unknown.
pub fn validate(
    expr: &Expr,
    entity_logical: &str,
    lookup: &dyn Fn(&str) -> Option<PropType>,
) -> Result<(), DvError> {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            validate(a, entity_logical, lookup)?;
            validate(b, entity_logical, lookup)
        }
        Expr::Not(a) => validate(a, entity_logical, lookup),
        Expr::Cmp { prop, op, lit } => {
            let t = lookup(prop).ok_or_else(|| DvError::unknown_property(entity_logical, prop))?;
            match lit_type(lit) {
                Some(lt) if lt != t => Err(DvError::new(
                    400,
                    "0x0",
                    format!(
                        "A binary operator with incompatible types was detected. Found operand types '{}' and '{}' for operator kind '{}'.",
                        edm(t),
                        edm(lt),
                        op_name(*op)
                    ),
                )),
                _ => Ok(()),
            }
        }
        Expr::Call { prop, .. } => match lookup(prop) {
            None => Err(DvError::unknown_property(entity_logical, prop)),
            Some(PropType::String) => Ok(()),
            Some(t) => Err(DvError::new(
                400,
                "0x0",
                format!(
                    "No function signature for the function with name 'contains' matches the specified arguments. The function signatures considered are: contains(Edm.String Nullable=true, Edm.String Nullable=true). Property type: {}.",
                    edm(t)
                ),
            )),
        },
    }
}

/// Evaluates against one row (missing property = null). Comparisons with a null column value are
/// false for every operator except `eq null`/`ne null`, as SQL-backed Dataverse does.
pub fn eval(expr: &Expr, row: &Map<String, Value>) -> bool {
    match expr {
        Expr::And(a, b) => eval(a, row) && eval(b, row),
        Expr::Or(a, b) => eval(a, row) || eval(b, row),
        Expr::Not(a) => !eval(a, row),
        Expr::Cmp { prop, op, lit } => {
            let v = row.get(prop).unwrap_or(&Value::Null);
            if *lit == Literal::Null {
                return match op {
                    CmpOp::Eq => v.is_null(),
                    CmpOp::Ne => !v.is_null(),
                    _ => false,
                };
            }
            match compare(v, lit) {
                None => false,
                Some(ord) => match op {
                    CmpOp::Eq => ord == Ordering::Equal,
                    CmpOp::Ne => ord != Ordering::Equal,
                    CmpOp::Gt => ord == Ordering::Greater,
                    CmpOp::Ge => ord != Ordering::Less,
                    CmpOp::Lt => ord == Ordering::Less,
                    CmpOp::Le => ord != Ordering::Greater,
                },
            }
        }
        Expr::Call { func, prop, arg } => {
            let Some(v) = row.get(prop).and_then(Value::as_str) else {
                return false;
            };
            let (v, arg) = (v.to_lowercase(), arg.to_lowercase());
            match func {
                Func::Contains => v.contains(&arg),
                Func::StartsWith => v.starts_with(&arg),
                Func::EndsWith => v.ends_with(&arg),
            }
        }
    }
}

fn compare(v: &Value, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (Value::String(s), Literal::Str(l)) => Some(s.to_lowercase().cmp(&l.to_lowercase())),
        (Value::String(s), Literal::Guid(g)) => Some(s.to_ascii_lowercase().cmp(g)),
        (Value::String(s), Literal::DateTime(d)) => {
            match (crate::clock::parse(s), crate::clock::parse(d)) {
                (Some(a), Some(b)) => Some(a.cmp(&b)),
                _ => Some(s.as_str().cmp(d.as_str())),
            }
        }
        (Value::Number(n), Literal::Int(i)) => n.as_i64().map(|x| x.cmp(i)),
        (Value::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmp(prop: &str, op: CmpOp, lit: Literal) -> Expr {
        Expr::Cmp {
            prop: prop.into(),
            op,
            lit,
        }
    }

    #[test]
    fn escaped_quote_in_string_literal() {
        let e = parse("emailaddress1 eq 'jane.o''brien@example.com'").unwrap();
        assert_eq!(
            e,
            cmp(
                "emailaddress1",
                CmpOp::Eq,
                Literal::Str("jane.o'brien@example.com".into())
            )
        );
    }

    #[test]
    fn unterminated_literal_reports_end_position() {
        let err = parse("lastname eq 'O'Bryan'").unwrap_err();
        assert_eq!(err.code, "0x80060888");
        assert_eq!(
            err.message,
            "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let e = parse("a eq 1 or b eq 2 and c eq 3").unwrap();
        let Expr::Or(_, right) = e else {
            panic!("expected or at the top")
        };
        assert!(matches!(*right, Expr::And(_, _)));
    }

    #[test]
    fn parentheses_not_null_and_guids() {
        let e = parse(
            "not (_msdynmkt_topicid_value ne null) and (_msdynmkt_purposeid_value eq 10000000-0000-0000-0000-000000000003)",
        )
        .unwrap();
        let row = json!({"_msdynmkt_topicid_value": null, "_msdynmkt_purposeid_value": "10000000-0000-0000-0000-000000000003"});
        assert!(eval(&e, row.as_object().unwrap()));
        let row2 = json!({"_msdynmkt_topicid_value": "x", "_msdynmkt_purposeid_value": "10000000-0000-0000-0000-000000000003"});
        assert!(!eval(&e, row2.as_object().unwrap()));
    }

    #[test]
    fn string_comparison_is_case_insensitive() {
        let e = parse("emailaddress1 eq 'JANE@Example.com'").unwrap();
        let row = json!({"emailaddress1": "jane@example.com"});
        assert!(eval(&e, row.as_object().unwrap()));
    }

    #[test]
    fn integers_and_literal_on_the_left() {
        let e = parse("534120001 eq msdynmkt_value").unwrap();
        assert_eq!(e, cmp("msdynmkt_value", CmpOp::Eq, Literal::Int(534120001)));
        let row = json!({"msdynmkt_value": 534120001});
        assert!(eval(&e, row.as_object().unwrap()));
    }

    #[test]
    fn null_column_never_matches_value_comparison() {
        let e = parse("emailaddress1 ne 'a@b.c'").unwrap();
        assert!(!eval(
            &e,
            json!({"emailaddress1": null}).as_object().unwrap()
        ));
    }

    #[test]
    fn functions_parse_and_evaluate() {
        let e = parse("startswith(emailaddress1,'jane')").unwrap();
        assert!(eval(
            &e,
            json!({"emailaddress1": "Jane@x"}).as_object().unwrap()
        ));
    }

    #[test]
    fn dangling_operator_is_a_syntax_error() {
        let err = parse("a eq").unwrap_err();
        assert_eq!(err.code, "0x80060888");
        assert!(err.message.starts_with("Syntax error at position 4"));
        assert!(parse("a eq 1 b").is_err());
        assert!(parse("(a eq 1").is_err());
    }

    #[test]
    fn validation_rejects_unknown_property_and_type_mismatch() {
        let types = |p: &str| match p {
            "msdynmkt_value" => Some(PropType::Int),
            "_msdynmkt_purposeid_value" => Some(PropType::Guid),
            _ => None,
        };
        let unknown = parse("nope eq 1").unwrap();
        let err = validate(&unknown, "msdynmkt_contactpointconsent4", &types).unwrap_err();
        assert_eq!(
            err.message,
            "Could not find a property named 'nope' on type 'Microsoft.Dynamics.CRM.msdynmkt_contactpointconsent4'."
        );
        let quoted_guid =
            parse("_msdynmkt_purposeid_value eq '10000000-0000-0000-0000-000000000003'").unwrap();
        assert!(validate(&quoted_guid, "x", &types).is_err());
        let ok = parse("msdynmkt_value eq 534120001 or msdynmkt_value eq null").unwrap();
        assert!(validate(&ok, "x", &types).is_ok());
    }
}
