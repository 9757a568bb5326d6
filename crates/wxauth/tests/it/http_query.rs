//! Queries over HTTP (`where`, `order_by`, cursors, `_count`) and shared
//! collections, on both backends, checked against a model written here.

use std::cmp::Ordering;
use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::app::on_both;
use crate::app::*;

on_both!(
    operators_types_and_sorts,
    paging_is_exact_under_any_order_while_inserting,
    random_queries_match_the_model_and_never_cross_users,
    shared_collections,
    bad_queries_are_400s_naming_the_problem,
    any_segment_name_matches_alike_on_both_backends,
);

async fn create(app: &TestApp, token: &str, collection: &str, body: Value) -> Value {
    let r = app
        .call(
            Method::POST,
            &format!("/v1/data/{collection}"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn query(app: &TestApp, token: &str, collection: &str, params: &[(&str, &str)]) -> Reply {
    let resp = app
        .http
        .get(format!("{}/v1/data/{collection}", app.url))
        .query(params)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    reply(resp).await
}

async fn count(app: &TestApp, token: &str, collection: &str, filter: &str) -> Reply {
    let resp = app
        .http
        .get(format!("{}/v1/data/{collection}/_count", app.url))
        .query(&[("where", filter)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    reply(resp).await
}

/// Every page of a query, `page` at a time; calls `between` after each page.
async fn walk(
    app: &TestApp,
    token: &str,
    collection: &str,
    filter: &str,
    order_by: Option<&str>,
    page: u32,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let page = page.to_string();
    loop {
        let mut params = vec![("where", filter), ("limit", page.as_str())];
        if let Some(o) = order_by {
            params.push(("order_by", o));
        }
        if let Some(c) = &cursor {
            params.push(("cursor", c.as_str()));
        }
        let r = query(app, token, collection, &params).await;
        assert_eq!(r.status, 200, "{filter} {order_by:?}: {:?}", r.body);
        items.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

fn titles(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|d| d["data"]["title"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn operators_types_and_sorts(app: TestApp) {
    let t = token(&app.login(APP1, "alice").await).to_owned();
    let docs = [
        json!({"title": "a", "done": false, "priority": 2, "meta": {"tag": "x"}}),
        json!({"title": "b", "done": true, "priority": 5}),
        json!({"title": "c", "done": false, "priority": "2"}),
        json!({"title": "d", "done": false, "priority": null}),
        json!({"title": "e", "priority": 2.0}),
        json!({"title": "ü", "done": false, "priority": -1, "meta": {"tag": "y"}}),
        json!({"title": "中文", "done": true, "priority": 10, "meta": {"tag": "x", "n": 1}}),
        json!({"title": "Z", "done": false, "priority": 3.5}),
    ];
    let mut ids = Vec::new();
    for d in docs {
        ids.push(
            create(&app, &t, "tasks", d).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        // Distinct creation times, so created_at orders match creation.
        app.advance(std::time::Duration::from_millis(2));
    }
    let id_a = ids[0].clone();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (r#"{"done":false}"#.into(), vec!["a", "c", "d", "ü", "Z"]),
        (r#"{"priority":2}"#.into(), vec!["a", "e"]),
        (r#"{"priority":"2"}"#.into(), vec!["c"]),
        (r#"{"priority":{"$gt":2}}"#.into(), vec!["b", "中文", "Z"]),
        (
            r#"{"priority":{"$gte":2,"$lt":5}}"#.into(),
            vec!["a", "e", "Z"],
        ),
        (r#"{"priority":{"$lte":2}}"#.into(), vec!["a", "e", "ü"]),
        (r#"{"priority":null}"#.into(), vec!["d"]),
        (r#"{"priority":{"$eq":null}}"#.into(), vec!["d"]),
        (
            r#"{"priority":{"$ne":2}}"#.into(),
            vec!["b", "c", "d", "ü", "中文", "Z"],
        ),
        (r#"{"done":{"$ne":false}}"#.into(), vec!["b", "e", "中文"]),
        (r#"{"done":{"$exists":false}}"#.into(), vec!["e"]),
        (r#"{"meta.tag":"x"}"#.into(), vec!["a", "中文"]),
        (r#"{"meta":{"tag":"x"}}"#.into(), vec!["a", "中文"]),
        (r#"{"meta.n":{"$exists":true}}"#.into(), vec!["中文"]),
        (
            r#"{"priority":{"$in":[2,"2",null]}}"#.into(),
            vec!["a", "c", "d", "e"],
        ),
        (
            r#"{"priority":{"$nin":[2,"2"]}}"#.into(),
            vec!["b", "d", "ü", "中文", "Z"],
        ),
        (
            r#"{"meta.tag":{"$nin":["x"]}}"#.into(),
            vec!["b", "c", "d", "e", "ü", "Z"],
        ),
        (
            r#"{"$or":[{"done":true},{"priority":{"$lt":0}}]}"#.into(),
            vec!["b", "中文", "ü"],
        ),
        (
            r#"{"$and":[{"done":false},{"$or":[{"meta.tag":"y"},{"priority":{"$gt":3}}]}]}"#.into(),
            vec!["ü", "Z"],
        ),
        // Strings compare bytewise: "Z" (0x5a) sorts before "a" (0x61).
        (
            r#"{"title":{"$gt":"Z"}}"#.into(),
            vec!["a", "b", "c", "d", "e", "ü", "中文"],
        ),
        (r#"{"title":{"$lt":"a"}}"#.into(), vec!["Z"]),
        (r#"{"title":"中文"}"#.into(), vec!["中文"]),
        (r#"{"done":"false"}"#.into(), vec![]),
        (r#"{"priority":{"$gt":"1"}}"#.into(), vec!["c"]),
        (format!(r#"{{"id":"{id_a}"}}"#), vec!["a"]),
        (r#"{"owner":"me","done":true}"#.into(), vec!["b", "中文"]),
        (
            r#"{"created_at":{"$gt":"2000-01-01T00:00:00Z"}}"#.into(),
            vec!["a", "b", "c", "d", "e", "ü", "中文", "Z"],
        ),
        (r#"{"created_at":{"$lt":0}}"#.into(), vec![]),
        ("{}".into(), vec!["a", "b", "c", "d", "e", "ü", "中文", "Z"]),
    ];
    for (filter, want) in cases {
        let got = walk(&app, &t, "tasks", &filter, None, 3).await;
        let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(sorted(titles(&got)), sorted(want.clone()), "where {filter}");
        let c = count(&app, &t, "tasks", &filter).await;
        assert_eq!(c.status, 200, "{:?}", c.body);
        assert_eq!(c.body, json!({"count": want.len()}), "count where {filter}");
    }
    // Sorting: by type (null < numbers < strings), then value, ties by id
    // in the last key's direction.
    let orders = [
        ("priority", vec!["d", "ü", "a", "e", "Z", "b", "中文", "c"]),
        ("-priority", vec!["c", "中文", "b", "Z", "e", "a", "ü", "d"]),
        (
            "done,-priority",
            vec!["e", "c", "Z", "a", "ü", "d", "中文", "b"],
        ),
        ("title", vec!["Z", "a", "b", "c", "d", "e", "ü", "中文"]),
        (
            "-created_at",
            vec!["Z", "中文", "ü", "e", "d", "c", "b", "a"],
        ),
        (
            "created_at",
            vec!["a", "b", "c", "d", "e", "ü", "中文", "Z"],
        ),
        (
            "meta.tag,title",
            vec!["Z", "b", "c", "d", "e", "a", "中文", "ü"],
        ),
    ];
    for (order, want) in orders {
        for page in [1, 3, 100] {
            let got = walk(&app, &t, "tasks", "{}", Some(order), page).await;
            assert_eq!(titles(&got), want, "order_by {order}, pages of {page}");
        }
    }
    // Default order: newest first.
    let got = walk(&app, &t, "tasks", "", None, 100).await;
    assert_eq!(titles(&got)[0], "Z");
}

/// Field names that mean something to a backend's path syntax (`null`
/// is a NULL element in an unquoted PostgreSQL array literal) are plain
/// names on both.
async fn any_segment_name_matches_alike_on_both_backends(app: TestApp) {
    let t = token(&app.login(APP1, "nadia").await).to_owned();
    for d in [
        json!({"title": "n1", "null": 1}),
        json!({"title": "n2", "NULL": "x", "Null": 2}),
        json!({"title": "n3", "meta": {"null": true, "true": 3}}),
        json!({"title": "n4", "null": 7}),
    ] {
        create(&app, &t, "names", d).await;
        app.advance(std::time::Duration::from_millis(2));
    }
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (r#"{"null":1}"#, vec!["n1"]),
        (r#"{"null":{"$exists":true}}"#, vec!["n1", "n4"]),
        (r#"{"null":{"$gt":1}}"#, vec!["n4"]),
        (r#"{"NULL":"x"}"#, vec!["n2"]),
        (r#"{"Null":2}"#, vec!["n2"]),
        (r#"{"meta.null":true}"#, vec!["n3"]),
        (r#"{"meta.true":3}"#, vec!["n3"]),
        (r#"{"meta.null":{"$exists":false}}"#, vec!["n1", "n2", "n4"]),
    ];
    for (filter, want) in cases {
        let got = walk(&app, &t, "names", filter, None, 2).await;
        let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(sorted(titles(&got)), sorted(want), "where {filter}");
    }
    let got = walk(&app, &t, "names", "{}", Some("-null,title"), 2).await;
    assert_eq!(titles(&got), ["n4", "n1", "n2", "n3"]);
}

async fn paging_is_exact_under_any_order_while_inserting(app: TestApp) {
    let t = token(&app.login(APP1, "pager").await).to_owned();
    let mut rng = StdRng::seed_from_u64(12);
    let mut existing = Vec::new();
    for chunk in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..25 {
            let n = chunk * 25 + i;
            let s = ["x", "y", "z"][rng.random_range(0..3)];
            let w = if n % 5 == 0 {
                Value::Null
            } else {
                json!(n % 3)
            };
            let body = json!({"title": format!("t{n}"), "n": n % 7, "s": s, "w": w});
            let app_url = app.url.clone();
            let http = app.http.clone();
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(format!("{app_url}/v1/data/pages"))
                    .bearer_auth(t)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let v: Value = r.json().await.unwrap();
                v["id"].as_str().unwrap().to_owned()
            }));
        }
        for task in tasks {
            existing.push(task.await.unwrap());
        }
        app.advance(std::time::Duration::from_millis(1));
    }
    let existing: HashSet<String> = existing.into_iter().collect();
    assert_eq!(existing.len(), 250);
    let mut inserted = 0;
    for order in [
        "n",
        "-n",
        "n,-s",
        "s,w,-n",
        "-created_at",
        "created_at",
        "w",
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("order_by", order), ("limit", "20")];
            if let Some(c) = &cursor {
                params.push(("cursor", c.as_str()));
            }
            let r = query(&app, &t, "pages", &params).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            for item in r.body["items"].as_array().unwrap() {
                seen.push(item["id"].as_str().unwrap().to_owned());
            }
            // Insert between pages: ties with what was seen and what is not.
            inserted += 1;
            create(
                &app,
                &t,
                "pages",
                json!({"title": format!("late{inserted}"), "n": inserted % 7, "s": "y", "w": 1}),
            )
            .await;
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "order_by {order}: a document twice"
        );
        for id in &existing {
            assert!(unique.contains(id), "order_by {order}: {id} missing");
        }
    }
    // Count is the length of a whole walk.
    let c = count(&app, &t, "pages", r#"{"n":{"$gte":3}}"#).await;
    let all = walk(&app, &t, "pages", r#"{"n":{"$gte":3}}"#, Some("-n"), 50).await;
    assert_eq!(c.body["count"], json!(all.len()));
    let c = count(&app, &t, "pages", "").await;
    assert_eq!(c.body["count"], json!(250 + inserted));
}

// --- The model: what a query means, written independently of the SQL.

fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = doc;
    for seg in path.split('.') {
        at = at.as_object()?.get(seg)?;
    }
    Some(at)
}

fn rank(v: Option<&Value>) -> u8 {
    match v {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::Bool(false)) => 2,
        Some(Value::Bool(true)) => 3,
        Some(Value::Number(_)) => 4,
        Some(Value::String(_)) => 5,
        Some(Value::Array(_)) => 6,
        Some(Value::Object(_)) => 7,
    }
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap()
            .partial_cmp(&y.as_f64().unwrap())
            .unwrap(),
        (Some(Value::String(x)), Some(Value::String(y))) => x.as_bytes().cmp(y.as_bytes()),
        _ => Ordering::Equal,
    })
}

/// A stored document as the model sees it: its API view.
fn field<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    match name {
        "id" | "owner" | "created_at" => doc.get(name),
        _ => lookup(&doc["data"], name),
    }
}

fn matches(doc: &Value, filter: &Map<String, Value>) -> bool {
    filter.iter().all(|(key, cond)| match key.as_str() {
        "$and" => cond
            .as_array()
            .unwrap()
            .iter()
            .all(|f| matches(doc, f.as_object().unwrap())),
        "$or" => cond
            .as_array()
            .unwrap()
            .iter()
            .any(|f| matches(doc, f.as_object().unwrap())),
        name => {
            let v = field(doc, name);
            let eq = |lit: &Value| v.is_some() && compare(v, Some(lit)) == Ordering::Equal;
            match cond {
                Value::Object(ops) => ops.iter().all(|(op, arg)| match op.as_str() {
                    "$eq" => eq(arg),
                    "$ne" => !eq(arg),
                    "$in" => arg.as_array().unwrap().iter().any(eq),
                    "$nin" => !arg.as_array().unwrap().iter().any(eq),
                    "$exists" => v.is_some() == arg.as_bool().unwrap(),
                    op => {
                        rank(v) == rank(Some(arg))
                            && match (op, compare(v, Some(arg))) {
                                ("$gt", o) => o == Ordering::Greater,
                                ("$gte", o) => o != Ordering::Less,
                                ("$lt", o) => o == Ordering::Less,
                                ("$lte", o) => o != Ordering::Greater,
                                _ => unreachable!(),
                            }
                    }
                }),
                lit => eq(lit),
            }
        }
    })
}

fn model_order(docs: &mut [Value], order: &[(String, bool)]) {
    let id_desc = order.last().map(|(_, d)| *d).unwrap_or(true);
    docs.sort_by(|a, b| {
        for (name, desc) in order {
            let o = compare(field(a, name), field(b, name));
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        // Ties: creation time, then id, in the last key's direction.
        let o = a["created_at"]
            .as_str()
            .cmp(&b["created_at"].as_str())
            .then_with(|| a["id"].as_str().cmp(&b["id"].as_str()));
        if id_desc { o.reverse() } else { o }
    });
}

fn random_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 | 3 => json!(rng.random_range(-3..4)),
        4 => json!(f64::from(rng.random_range(-6..8)) / 2.0),
        5 | 6 => json!(["", "a", "B", "b", "é", "猫", "1"][rng.random_range(0..7)]),
        7 => json!([1, 2]),
        _ => json!({"k": 1}),
    }
}

fn random_scalar(rng: &mut StdRng) -> Value {
    loop {
        let v = random_value(rng);
        if !v.is_array() && !v.is_object() {
            return v;
        }
    }
}

fn random_condition(
    rng: &mut StdRng,
    others: &[String],
    me_owner: &str,
    other_owner: &str,
) -> (String, Value) {
    let fields = ["x", "y", "nested.z", "missing"];
    match rng.random_range(0..12) {
        // Attempts to reach the other user's documents.
        0 => (
            "id".into(),
            json!({"$in": [others[rng.random_range(0..others.len())]]}),
        ),
        1 => (
            "owner".into(),
            json!([other_owner, me_owner, "me"][rng.random_range(0..3)]),
        ),
        _ => {
            let f = fields[rng.random_range(0..fields.len())].to_owned();
            let cond = match rng.random_range(0..9) {
                0 => random_scalar(rng),
                1 => json!({"$eq": random_scalar(rng)}),
                2 => json!({"$ne": random_scalar(rng)}),
                3 => json!({"$in": [random_scalar(rng), random_scalar(rng)]}),
                4 => json!({"$nin": [random_scalar(rng)]}),
                5 => json!({"$exists": rng.random_bool(0.5)}),
                _ => {
                    let op = ["$gt", "$gte", "$lt", "$lte"][rng.random_range(0..4)];
                    let lit = if rng.random_bool(0.5) {
                        json!(rng.random_range(-3..4))
                    } else {
                        json!(["a", "b", "é", ""][rng.random_range(0..4)])
                    };
                    json!({op: lit})
                }
            };
            (f, cond)
        }
    }
}

async fn random_queries_match_the_model_and_never_cross_users(app: TestApp) {
    let seed: u64 = std::env::var("WXAUTH_QUERY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let mut rng = StdRng::seed_from_u64(seed);
    let alice_login = app.login(APP1, "model-alice").await;
    let bob_login = app.login(APP1, "model-bob").await;
    let alice = token(&alice_login).to_owned();
    let bob = token(&bob_login).to_owned();
    let alice_id = alice_login["user"]["id"].as_str().unwrap().to_owned();
    let bob_id = bob_login["user"]["id"].as_str().unwrap().to_owned();
    // Both users' documents, in a private collection and a shared one.
    let mut docs: Vec<(String, Value)> = Vec::new(); // (collection, stored view)
    for i in 0..60 {
        let (t, _) = if i % 2 == 0 {
            (&alice, &alice_id)
        } else {
            (&bob, &bob_id)
        };
        let mut body = Map::new();
        for f in ["x", "y"] {
            if rng.random_bool(0.85) {
                body.insert(f.into(), random_value(&mut rng));
            }
        }
        if rng.random_bool(0.5) {
            body.insert("nested".into(), json!({"z": random_value(&mut rng)}));
        }
        for collection in ["notes", "posts"] {
            let mut view = create(&app, t, collection, Value::Object(body.clone())).await;
            view["owner"] = json!(if i % 2 == 0 { &alice_id } else { &bob_id });
            docs.push((collection.to_owned(), view));
        }
        if i % 10 == 0 {
            app.advance(std::time::Duration::from_millis(1));
        }
    }
    let bob_ids: Vec<String> = docs
        .iter()
        .filter(|(_, d)| d["owner"] == json!(bob_id))
        .map(|(_, d)| d["id"].as_str().unwrap().to_owned())
        .collect();
    for case in 0..60 {
        let mut filter = Map::new();
        for _ in 0..rng.random_range(0..3) {
            let (k, v) = random_condition(&mut rng, &bob_ids, &alice_id, &bob_id);
            filter.insert(k, v);
        }
        if rng.random_bool(0.3) {
            let branches: Vec<Value> = (0..2)
                .map(|_| {
                    let (k, v) = random_condition(&mut rng, &bob_ids, &alice_id, &bob_id);
                    json!({ k: v })
                })
                .collect();
            filter.insert("$or".into(), Value::Array(branches));
        }
        let keys = ["x", "-x", "y", "-y", "nested.z", "-created_at", "owner"];
        let order: Vec<(String, bool)> = (0..rng.random_range(1..3))
            .map(|_| {
                let k = keys[rng.random_range(0..keys.len())];
                match k.strip_prefix('-') {
                    Some(rest) => (rest.to_owned(), true),
                    None => (k.to_owned(), false),
                }
            })
            .collect();
        let order_by: Vec<String> = order
            .iter()
            .map(|(k, d)| format!("{}{k}", if *d { "-" } else { "" }))
            .collect();
        let order_by = order_by.join(",");
        let text = Value::Object(filter.clone()).to_string();
        for collection in ["notes", "posts"] {
            let shared = collection == "posts";
            // The model's answer: the caller's scope, then the filter.
            let mut model_filter = filter.clone();
            if let Some(o) = model_filter.get_mut("owner")
                && *o == json!("me")
            {
                *o = json!(alice_id);
            }
            for branch in model_filter
                .get_mut("$or")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if branch.get("owner") == Some(&json!("me")) {
                    branch["owner"] = json!(alice_id);
                }
            }
            let mut want: Vec<Value> = docs
                .iter()
                .filter(|(c, d)| c == collection && (shared || d["owner"] == json!(alice_id)))
                .map(|(_, d)| d.clone())
                .filter(|d| matches(d, &model_filter))
                .collect();
            model_order(&mut want, &order);
            let got = walk(&app, &alice, collection, &text, Some(&order_by), 7).await;
            let got_ids: Vec<&str> = got.iter().map(|d| d["id"].as_str().unwrap()).collect();
            let want_ids: Vec<&str> = want.iter().map(|d| d["id"].as_str().unwrap()).collect();
            assert_eq!(
                got_ids, want_ids,
                "seed {seed} case {case}: {collection} where {text} order_by {order_by}"
            );
            if !shared {
                for d in &got {
                    assert!(
                        !bob_ids.contains(&d["id"].as_str().unwrap().to_owned()),
                        "bob's document {d} reached alice"
                    );
                }
            }
            let c = count(&app, &alice, collection, &text).await;
            assert_eq!(
                c.body["count"],
                json!(want.len()),
                "count {collection} {text}"
            );
        }
    }
}

async fn shared_collections(app: TestApp) {
    let alice_login = app.login(APP1, "share-alice").await;
    let alice = token(&alice_login).to_owned();
    let alice_id = alice_login["user"]["id"].as_str().unwrap().to_owned();
    let bob = token(&app.login(APP1, "share-bob").await).to_owned();
    let carol_app2 = token(&app.login(APP2, "share-carol").await).to_owned();

    let post = create(&app, &alice, "posts", json!({"status": "open", "score": 3})).await;
    assert_eq!(
        post["owner"],
        json!(alice_id),
        "a shared document names its owner"
    );
    let id = post["id"].as_str().unwrap();
    let private = create(&app, &alice, "notes", json!({"status": "open"})).await;
    assert!(
        private.get("owner").is_none(),
        "private documents carry no owner"
    );

    // Bob reads Alice's post: in a list, by id, with a filter, by count.
    let r = query(&app, &bob, "posts", &[("where", r#"{"status":"open"}"#)]).await;
    assert_eq!(r.body["items"], json!([post.clone()]));
    let g = app.get(&format!("/v1/data/posts/{id}"), Some(&bob)).await;
    assert_eq!((g.status.as_u16(), &g.body), (200, &post));
    assert_eq!(count(&app, &bob, "posts", "{}").await.body["count"], 1);
    // "me" is the caller.
    let mine = query(&app, &bob, "posts", &[("where", r#"{"owner":"me"}"#)]).await;
    assert_eq!(mine.body["items"], json!([]));
    let hers = query(&app, &alice, "posts", &[("where", r#"{"owner":"me"}"#)]).await;
    assert_eq!(hers.body["items"], json!([post.clone()]));
    let by_id = query(
        &app,
        &bob,
        "posts",
        &[("where", &json!({"owner": alice_id}).to_string())],
    )
    .await;
    assert_eq!(by_id.body["items"], json!([post.clone()]));
    // Bob cannot change or delete it: 404, as for a private document.
    let p = app
        .call(
            Method::PUT,
            &format!("/v1/data/posts/{id}"),
            Some(&bob),
            Some(json!({"status": "spam"})),
        )
        .await;
    assert_eq!((p.status.as_u16(), p.error()), (404, "not_found"));
    let d = app
        .call(
            Method::DELETE,
            &format!("/v1/data/posts/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!((d.status.as_u16(), d.error()), (404, "not_found"));
    // Alice still can.
    let p = app
        .call(
            Method::PUT,
            &format!("/v1/data/posts/{id}"),
            Some(&alice),
            Some(json!({"status": "closed", "score": 4})),
        )
        .await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(p.body["owner"], json!(alice_id));
    // Another app's users see none of it.
    let other = query(&app, &carol_app2, "posts", &[]).await;
    assert_eq!(other.body["items"], json!([]));
    let g = app
        .get(&format!("/v1/data/posts/{id}"), Some(&carol_app2))
        .await;
    assert_eq!(g.status, 404);
    // Private collections stay private.
    let n = query(&app, &bob, "notes", &[]).await;
    assert_eq!(n.body["items"], json!([]));
    let g = app
        .get(
            &format!("/v1/data/notes/{}", private["id"].as_str().unwrap()),
            Some(&bob),
        )
        .await;
    assert_eq!(g.status, 404);
    // admin_write: users read, the server alone writes.
    let w = app
        .call(
            Method::POST,
            "/v1/data/catalogue",
            Some(&alice),
            Some(json!({"sku": 1})),
        )
        .await;
    assert_eq!(
        (w.status.as_u16(), w.error()),
        (403, "forbidden"),
        "{:?}",
        w.body
    );
    assert!(w.message().contains("admin_write"), "{}", w.message());
    let l = query(&app, &alice, "catalogue", &[]).await;
    assert_eq!((l.status.as_u16(), &l.body["items"]), (200, &json!([])));
    // The server writes it: the operator's CLI, on the same database
    // with the same configuration as the server's.
    let dir = crate::db::temp_dir();
    let config = crate::spawn::ConfigFile {
        tail: "[[collections]]\nname = \"catalogue\"\naccess = \"admin_write\"\n".into(),
        ..crate::spawn::ConfigFile::on(&app.database_url, "http://127.0.0.1:9")
    }
    .write(&dir.0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .args(["admin", "data-add", "--config"])
        .arg(&config)
        .args([
            "catalogue",
            "--owner",
            &alice_id,
            r#"{"sku":"tea","price":12}"#,
        ])
        .env_remove("WXAUTH_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let l = query(
        &app,
        &bob,
        "catalogue",
        &[("where", r#"{"price":{"$gt":10}}"#)],
    )
    .await;
    assert_eq!(l.body["items"][0]["id"], printed["id"], "{:?}", l.body);
    assert_eq!(l.body["items"][0]["owner"], json!(alice_id));
    assert_eq!(
        l.body["items"][0]["data"],
        json!({"sku": "tea", "price": 12})
    );
    // Even its owner cannot change it through the API.
    let p = app
        .call(
            Method::PUT,
            &format!("/v1/data/catalogue/{}", printed["id"].as_str().unwrap()),
            Some(&alice),
            Some(json!({"sku": "tea", "price": 1})),
        )
        .await;
    assert_eq!(p.status, 403);
    // A user of another app does not see it.
    let other = query(&app, &carol_app2, "catalogue", &[]).await;
    assert_eq!(other.body["items"], json!([]));
}

async fn bad_queries_are_400s_naming_the_problem(app: TestApp) {
    let t = token(&app.login(APP1, "bad-queries").await).to_owned();
    create(&app, &t, "notes", json!({"a": 1})).await;
    create(&app, &t, "notes", json!({"a": 2})).await;
    let many: Vec<String> = (0..21).map(|i| format!("\"f{i}\":1")).collect();
    let many = format!("{{{}}}", many.join(","));
    let in_values: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let big_in = format!("{{\"a\":{{\"$in\":[{}]}}}}", in_values.join(","));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("where", "{not json")], "not valid JSON"),
        (vec![("where", "[1,2]")], "JSON object"),
        (
            vec![("where", r#"{"a":{"$regex":"^x"}}"#)],
            "unknown operator $regex",
        ),
        (
            vec![("where", r#"{"$where":"1"}"#)],
            "unknown operator $where",
        ),
        (
            vec![(
                "where",
                r#"{"$or":[{"$or":[{"$or":[{"$or":[{"a":1}]}]}]}]}"#,
            )],
            "deeper than 4",
        ),
        (vec![("where", &many)], "more than 20 conditions"),
        (vec![("where", &big_in)], "at most 100 values"),
        (
            vec![("where", r#"{"a;drop table documents":1}"#)],
            "[A-Za-z0-9_]",
        ),
        (vec![("where", r#"{"a..b":1}"#)], "segment"),
        (
            vec![("where", r#"{"a":{"$gt":null}}"#)],
            "numbers or strings",
        ),
        (vec![("order_by", "a,-b'c")], "order_by"),
        (vec![("order_by", "a,,b")], "order_by"),
        (vec![("limit", "0")], "limit"),
        (vec![("cursor", "not-a-cursor")], "cursor"),
    ];
    for (params, want) in cases {
        for path in ["list", "count"] {
            if path == "count" && !params.iter().any(|(k, _)| *k == "where") {
                continue;
            }
            let r = if path == "list" {
                query(&app, &t, "notes", &params).await
            } else {
                count(&app, &t, "notes", params[0].1).await
            };
            assert_eq!(
                (r.status.as_u16(), r.error()),
                (400, "invalid_request"),
                "{params:?}: {:?}",
                r.body
            );
            assert!(r.message().contains(want), "{params:?}: {}", r.message());
        }
    }
    // A cursor from another query.
    let first = query(&app, &t, "notes", &[("limit", "1"), ("order_by", "a")]).await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let same = query(
        &app,
        &t,
        "notes",
        &[("limit", "1"), ("order_by", "a"), ("cursor", &cursor)],
    )
    .await;
    assert_eq!(same.status, 200);
    assert_eq!(same.body["items"][0]["data"], json!({"a": 2}));
    for params in [
        vec![
            ("limit", "1"),
            ("order_by", "-a"),
            ("cursor", cursor.as_str()),
        ],
        vec![
            ("limit", "1"),
            ("where", r#"{"a":1}"#),
            ("order_by", "a"),
            ("cursor", cursor.as_str()),
        ],
    ] {
        let r = query(&app, &t, "notes", &params).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert!(r.message().contains("another query"), "{}", r.message());
    }
    let r = query(
        &app,
        &t,
        "other",
        &[("limit", "1"), ("order_by", "a"), ("cursor", &cursor)],
    )
    .await;
    assert_eq!(r.status, 400);
    // U+0000 in a where literal is refused (PostgreSQL refuses it as a
    // parameter); a document holding it is stored and its other fields
    // are queried as usual on both backends.
    let r = query(&app, &t, "notes", &[("where", r#"{"s":"a\u0000b"}"#)]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.message().contains("U+0000"), "{}", r.message());
    create(
        &app,
        &t,
        "nul",
        json!({"s": "a\u{0}b", "k\u{0}": 1, "n": 7}),
    )
    .await;
    let r = query(&app, &t, "nul", &[("where", r#"{"n":7}"#)]).await;
    assert_eq!(
        r.body["items"][0]["data"],
        json!({"s": "a\u{0}b", "k\u{0}": 1, "n": 7})
    );
}

#[test]
fn collection_settings_are_checked_with_the_key_named() {
    use wxauth::config::CollectionConfig;
    use wxauth::vocab::Access;
    let entry = |name: &str, access: &str, indexes: &[&str]| CollectionConfig {
        name: name.into(),
        access: match access {
            "public_read" => Access::PublicRead,
            "admin_write" => Access::AdminWrite,
            _ => Access::Private,
        },
        indexes: indexes.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    let check = |collections: Vec<CollectionConfig>| {
        let mut c = test_config("sqlite://x.db", "http://127.0.0.1:9");
        c.collections = collections;
        c.resolve().map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(
        check(vec![entry(
            "posts",
            "public_read",
            &["status", "-meta.score"]
        )])
        .is_ok()
    );
    for (bad, want) in [
        (vec![entry("Posts", "private", &[])], "collections[0].name"),
        (
            vec![entry("posts", "private", &["a b"])],
            "collections[0].indexes",
        ),
        (vec![entry("posts", "private", &["created_at"])], "built-in"),
        (vec![entry("posts", "private", &["1"])], "all digits"),
        (
            vec![
                entry("posts", "private", &[]),
                entry("posts", "admin_write", &[]),
            ],
            "configured twice",
        ),
        (
            vec![entry(
                "posts",
                "private",
                &["a", "b", "c", "d", "e", "f", "g", "h", "i"],
            )],
            "at most 8",
        ),
    ] {
        let err = check(bad).unwrap_err();
        assert!(err.contains(want), "{want}: {err}");
    }
    // A mode that is not one is refused as the file is read, with the
    // allowed values named (so are the gateway's auth and the token source).
    let dir = crate::db::temp_dir();
    for (text, key, allowed) in [
        (
            "[[collections]]\nname = \"posts\"\naccess = \"public\"\n",
            "access",
            "public_read",
        ),
        (
            "[[gateway]]\nprefix = \"/api/\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"maybe\"\n",
            "auth",
            "optional",
        ),
        (
            "[wechat]\ntoken_source = \"fast\"\n",
            "token_source",
            "classic",
        ),
    ] {
        let file = dir.0.join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let err = wxauth::config::Config::load(Some(&file))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(allowed), "{text}: {err}");
    }
}

/// `wxauth migrate` builds the declared indexes (so a large collection's
/// index is built there, not at the next start), and again is a no-op.
#[tokio::test]
async fn migrate_creates_the_declared_indexes() {
    let dir = crate::db::temp_dir();
    let db = dir.0.join("wxauth.db");
    let config = dir.0.join("wxauth.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}\"\n[[collections]]\nname = \"posts\"\naccess = \"public_read\"\nindexes = [\"status\", \"-score\"]\n[[collections]]\nname = \"todos\"\nindexes = [\"done\"]\n",
            db.display()
        ),
    )
    .unwrap();
    for _ in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxauth"))
            .args(["migrate", "--config"])
            .arg(&config)
            .env_remove("WXAUTH_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name LIKE 'wxq%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    use sqlx::Row;
    let sql: Vec<String> = rows.iter().map(|r| r.get::<String, _>("sql")).collect();
    // Two on posts, one on todos, and the shared collection's default order.
    assert_eq!(sql.len(), 4, "{sql:#?}");
    assert_eq!(
        sql.iter().filter(|s| s.contains("'$.status'")).count(),
        1,
        "{sql:#?}"
    );
    assert!(
        sql.iter()
            .any(|s| s.contains("'$.score'") && s.contains("DESC") && s.contains("appid"))
    );
    assert!(sql.iter().any(|s| s.contains("'$.done'")
        && s.contains("user_id")
        && s.contains("collection = 'todos'")));
    pool.close().await;
}
