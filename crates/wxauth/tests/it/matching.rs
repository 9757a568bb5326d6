//! A watch decides in memory which documents a query shows, and in what
//! order (`Filter::matches`, `cmp_listed`): it must decide exactly as the
//! store's SQL does, or a watcher would see documents `GET /v1/data` would
//! not list (or miss ones it would). Random documents with every JSON
//! type at the queried paths, random filters of every kind, on SQLite and
//! PostgreSQL: the same documents in the same order, every time.

use serde_json::{Number, Value, json};
use wxauth::store::{DocumentQuery, KeyValue, Scope, Store};
use wxauth::vocab::query::{DocumentFields, Field, Filter, Op, Scalar, SortKey, cmp_listed};

use crate::db::both_backends;

both_backends!(watches_match_and_order_documents_as_the_sql_does);

/// xorshift64*: deterministic, so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A value of any JSON type, from a small set so conditions hit often.
fn value(rng: &mut Rng) -> Option<Value> {
    Some(match rng.below(14) {
        0 => return None,
        1 => Value::Null,
        2 => json!(true),
        3 => json!(false),
        4 => json!(rng.below(5) as i64 - 2),
        5 => json!(1.5),
        6 => json!(-0.5),
        7 => json!(""),
        8 => json!("a"),
        9 => json!("b"),
        10 => json!("Z"),
        11 => json!("é"),
        12 => json!([1]),
        _ => json!({"k": 1}),
    })
}

fn scalar(rng: &mut Rng) -> Scalar {
    match rng.below(10) {
        0 => Scalar::Null,
        1 => Scalar::Bool(rng.below(2) == 0),
        2 | 3 => Scalar::Number(Number::from(rng.below(5) as i64 - 2)),
        4 => Scalar::Number(Number::from_f64(1.5).unwrap()),
        5 => Scalar::Text(String::new()),
        6 => Scalar::Text("a".into()),
        7 => Scalar::Text("b".into()),
        8 => Scalar::Text("Z".into()),
        _ => Scalar::Text("é".into()),
    }
}

fn field(rng: &mut Rng) -> Field {
    match rng.below(6) {
        0 | 1 => Field::Data(vec!["a".into()]),
        2 => Field::Data(vec!["o".into(), "k".into()]),
        3 => Field::Data(vec!["s".into()]),
        4 => Field::CreatedAt,
        _ => Field::Id,
    }
}

fn filter(rng: &mut Rng, depth: usize) -> Filter {
    match rng.below(if depth > 1 { 4 } else { 6 }) {
        0 | 1 => {
            let f = field(rng);
            let op = [Op::Eq, Op::Ne, Op::Gt, Op::Gte, Op::Lt, Op::Lte][rng.below(6)];
            // Ordered comparisons take numbers and strings only (the
            // parser refuses the others); built-in times take integers.
            let mut v = scalar(rng);
            if !matches!(op, Op::Eq | Op::Ne) {
                while !matches!(v, Scalar::Number(_) | Scalar::Text(_)) {
                    v = scalar(rng);
                }
            }
            if f == Field::CreatedAt && rng.below(2) == 0 {
                v = Scalar::Number(Number::from(1000 + rng.below(60) as i64));
            }
            Filter::Compare(f, op, v)
        }
        2 => {
            let n = rng.below(4);
            Filter::In(
                field(rng),
                (0..n).map(|_| scalar(rng)).collect(),
                rng.below(2) == 0,
            )
        }
        3 => Filter::Exists(field(rng), rng.below(2) == 0),
        4 => Filter::All(
            (0..1 + rng.below(3))
                .map(|_| filter(rng, depth + 1))
                .collect(),
        ),
        _ => Filter::Any(
            (0..1 + rng.below(3))
                .map(|_| filter(rng, depth + 1))
                .collect(),
        ),
    }
}

async fn watches_match_and_order_documents_as_the_sql_does(store: &Store) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let user = crate::store::log_in(store, "match", &[("wxm", "m")]).await[0].clone();
    let quota = wxauth::store::UserQuota {
        max_collections: 100,
        max_bytes: 1 << 24,
    };
    let mut docs = Vec::new();
    for i in 0..60 {
        let mut data = serde_json::Map::new();
        for key in ["a", "s"] {
            if let Some(v) = value(&mut rng) {
                data.insert(key.into(), v);
            }
        }
        match rng.below(3) {
            0 => {}
            1 => {
                let mut o = serde_json::Map::new();
                if let Some(v) = value(&mut rng) {
                    o.insert("k".into(), v);
                }
                data.insert("o".into(), Value::Object(o));
            }
            _ => {
                if let Some(v) = value(&mut rng) {
                    data.insert("o".into(), v);
                }
            }
        }
        let created = store
            .create_document(wxauth::store::NewDocument {
                id: uuid::Uuid::now_v7().to_string(),
                user_id: user.clone(),
                appid: "wxm".into(),
                collection: "m".into(),
                data: Value::Object(data).to_string(),
                // Some share a creation time: the id breaks the tie.
                now: 1000 + (i / 2) as i64,
                max_documents: 10_000,
                quota,
                idempotency: None,
            })
            .await
            .unwrap();
        let wxauth::store::CreateOutcome::Created(doc) = created else {
            panic!("not created")
        };
        docs.push(doc);
    }
    let scope = Scope::Owner {
        user_id: user.clone(),
        collection: "m".into(),
    };
    for round in 0..250 {
        let f = filter(&mut rng, 0);
        let descending = rng.below(2) == 0;
        let mut order = vec![SortKey {
            field: [
                Field::Data(vec!["a".into()]),
                Field::Data(vec!["o".into(), "k".into()]),
                Field::Data(vec!["s".into()]),
            ][rng.below(3)]
            .clone(),
            descending,
        }];
        order.push(SortKey {
            field: Field::CreatedAt,
            descending: rng.below(2) == 0 && descending,
        });
        let by_sql: Vec<String> = store
            .query_documents(&DocumentQuery {
                scope: &scope,
                filter: &f,
                order: &order,
                after: None,
                limit: 1000,
            })
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        let mut in_memory: Vec<(Vec<KeyValue>, String)> = docs
            .iter()
            .filter_map(|d| {
                let data: Value = serde_json::from_str(&d.data).unwrap();
                let fields = DocumentFields {
                    id: &d.id,
                    owner: &d.owner,
                    created_at: d.created_at,
                    updated_at: d.updated_at,
                };
                f.matches(&fields, &data).then(|| {
                    let keys = order
                        .iter()
                        .map(|k| KeyValue::of(&k.field, &fields, &data))
                        .collect();
                    (keys, d.id.clone())
                })
            })
            .collect();
        in_memory.sort_by(|a, b| cmp_listed(&order, (&a.0, &a.1), (&b.0, &b.1)));
        let in_memory: Vec<String> = in_memory.into_iter().map(|(_, id)| id).collect();
        if by_sql != in_memory {
            let shown: Vec<&str> = docs.iter().map(|d| d.data.as_str()).collect();
            panic!(
                "seed {seed}, round {round}: {f:?} ordered by {order:?}\nSQL:       {by_sql:?}\nin memory: {in_memory:?}\ndocuments: {shown:?}"
            );
        }
    }
}
