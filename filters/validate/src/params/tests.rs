use super::*;
use meshwall_core::http::query_pairs;

static L: std::sync::LazyLock<Literals> = std::sync::LazyLock::new(Literals::default);

const INT: Types = Types {
    integer: true,
    number: false,
    boolean: false,
    null: false,
};
const NUM: Types = Types {
    integer: false,
    number: true,
    boolean: false,
    null: false,
};
const BOOL: Types = Types {
    integer: false,
    number: false,
    boolean: true,
    null: false,
};

fn param(style: Style, explode: bool, shape: Shape) -> Param {
    Param {
        name: "id".into(),
        location: Location::Query,
        required: false,
        style,
        explode,
        allow_empty: false,
        shape,
        schema: None,
    }
}

#[test]
fn coercion() {
    assert_eq!(coerce("12", INT, &L), Value::from(12));
    assert_eq!(coerce("-3", INT, &L), Value::from(-3));
    assert_eq!(coerce("1.5", INT, &L), Value::from("1.5"));
    assert_eq!(coerce("1.5", NUM, &L), serde_json::json!(1.5));
    assert_eq!(coerce("7", NUM, &L), Value::from(7));
    assert_eq!(coerce("inf", NUM, &L), Value::from("inf"));
    assert_eq!(coerce("NaN", NUM, &L), Value::from("NaN"));
    assert_eq!(coerce("true", BOOL, &L), Value::Bool(true));
    assert_eq!(coerce("True", BOOL, &L), Value::from("True"));
    assert_eq!(coerce("null", Types { null: true, ..INT }, &L), Value::Null);
    assert_eq!(coerce("12", Types::default(), &L), Value::from("12"));
}

#[test]
fn query_styles() {
    let q = query_pairs("id=1&id=2&csv=3,4&sp=5%206&pipe=7|8&f[a]=1&f[b]=x&plus=a+b&empty");
    let mut p = param(Style::Form, true, Shape::Array(INT));
    assert_eq!(
        query_value(&p, &q, &L).unwrap(),
        Some(serde_json::json!([1, 2]))
    );
    p.name = "csv".into();
    p.explode = false;
    assert_eq!(
        query_value(&p, &q, &L).unwrap(),
        Some(serde_json::json!([3, 4]))
    );
    p.name = "sp".into();
    p.style = Style::SpaceDelimited;
    assert_eq!(
        query_value(&p, &q, &L).unwrap(),
        Some(serde_json::json!([5, 6]))
    );
    p.name = "pipe".into();
    p.style = Style::PipeDelimited;
    assert_eq!(
        query_value(&p, &q, &L).unwrap(),
        Some(serde_json::json!([7, 8]))
    );
    let mut d = param(
        Style::DeepObject,
        true,
        Shape::Object(vec![("a".into(), INT)]),
    );
    d.name = "f".into();
    assert_eq!(
        query_value(&d, &q, &L).unwrap(),
        Some(serde_json::json!({"a": 1, "b": "x"}))
    );
    let mut s = param(Style::Form, true, Shape::Primitive(Types::default()));
    s.name = "plus".into();
    assert_eq!(query_value(&s, &q, &L).unwrap(), Some(Value::from("a b")));
    s.name = "empty".into();
    assert_eq!(query_value(&s, &q, &L).unwrap(), Some(Value::from("")));
    // A scalar given twice is an error, not silently the first or last.
    s.name = "id".into();
    assert!(query_value(&s, &q, &L).is_err());
    s.name = "absent".into();
    assert_eq!(query_value(&s, &q, &L).unwrap(), None);
    // form + explode object: properties are top-level parameters.
    let o = param(
        Style::Form,
        true,
        Shape::Object(vec![
            ("csv".into(), Types::default()),
            ("sp".into(), Types::default()),
        ]),
    );
    assert_eq!(
        query_value(&o, &q, &L).unwrap(),
        Some(serde_json::json!({"csv": "3,4", "sp": "5 6"}))
    );
    let mut o = param(Style::Form, false, Shape::Object(vec![("R".into(), INT)]));
    o.name = "c".into();
    assert_eq!(
        query_value(&o, &query_pairs("c=R,100,G,200"), &L).unwrap(),
        Some(serde_json::json!({"R": 100, "G": "200"}))
    );
}

#[test]
fn path_styles() {
    let simple = param(Style::Simple, false, Shape::Array(INT));
    assert_eq!(
        deserialize(&simple, "3,4,5", &L).unwrap(),
        serde_json::json!([3, 4, 5])
    );
    let obj = param(Style::Simple, true, Shape::Object(vec![("a".into(), INT)]));
    assert_eq!(
        deserialize(&obj, "a=1,b=2", &L).unwrap(),
        serde_json::json!({"a": 1, "b": "2"})
    );
    let obj = param(Style::Simple, false, Shape::Object(vec![]));
    assert_eq!(
        deserialize(&obj, "a,1,b,2", &L).unwrap(),
        serde_json::json!({"a": "1", "b": "2"})
    );
    let label = param(Style::Label, false, Shape::Array(INT));
    assert_eq!(
        deserialize(&label, ".3,4", &L).unwrap(),
        serde_json::json!([3, 4])
    );
    let label = param(Style::Label, true, Shape::Array(INT));
    assert_eq!(
        deserialize(&label, ".3.4", &L).unwrap(),
        serde_json::json!([3, 4])
    );
    assert!(deserialize(&label, "3.4", &L).is_err());
    let m = param(Style::Matrix, false, Shape::Array(INT));
    assert_eq!(
        deserialize(&m, ";id=3,4", &L).unwrap(),
        serde_json::json!([3, 4])
    );
    let m = param(Style::Matrix, true, Shape::Array(INT));
    assert_eq!(
        deserialize(&m, ";id=3;id=4", &L).unwrap(),
        serde_json::json!([3, 4])
    );
    let m = param(Style::Matrix, false, Shape::Primitive(INT));
    assert_eq!(deserialize(&m, ";id=9", &L).unwrap(), Value::from(9));
    let j = param(Style::Form, true, Shape::Json);
    assert_eq!(
        deserialize(&j, "{\"a\":1}", &L).unwrap(),
        serde_json::json!({"a": 1})
    );
    assert!(deserialize(&j, "{", &L).is_err());
}

#[test]
fn unknown_query_names_reported_once_each_up_to_the_cap() {
    let (schemas, _) = crate::schema::compile(
        serde_json::json!({}),
        &[],
        crate::schema::Dialect::Oas30,
        true,
    )
    .unwrap();
    let declared = [param(Style::Form, true, Shape::Primitive(INT))];
    let check_query = |q: &str, max: usize| {
        let r = Request {
            path: format!("/x?{q}"),
            ..Default::default()
        };
        let mut out = Vec::new();
        let query = query_pairs(r.query().unwrap_or_default());
        check(
            &declared,
            &[],
            &r,
            &query,
            &schemas,
            &L,
            true,
            max,
            &mut out,
        );
        out.into_iter().map(|v| v.pointer).collect::<Vec<_>>()
    };
    assert_eq!(
        check_query("b=1&id=2&b=3&a%2Fc=4&b=5", 10),
        vec!["#/query/b", "#/query/a~1c"]
    );
    // A long query string of distinct undeclared names (what a client can fit in the
    // request line): the first `max` names, in order, and nothing more.
    let long: Vec<String> = (0..40_000).map(|i| format!("p{i}")).collect();
    assert_eq!(
        check_query(&long.join("&"), 3),
        vec!["#/query/p0", "#/query/p1", "#/query/p2"]
    );
    assert!(check_query("id=1", 10).is_empty());
}
