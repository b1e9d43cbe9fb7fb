//! Exactness under concurrent writers on MySQL: four threads update overlapping rows,
//! as MariaDB captures them and as MySQL 8 does.

mod common;
#[path = "common/mysql_people.rs"]
mod mysql_people;

use common::{assert_empty, emitter, recv_n};
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use mysql_people::*;
use std::collections::{BTreeMap, BTreeSet};

mysql_people::both_flavors!(
    concurrent_updates_of_overlapping_rows_emit_exactly_the_rows_each_updated,
);

/// Four threads update overlapping ranges of rows, many times: each statement's
/// events are exactly the rows of its range (never a row it did not touch, never
/// one missing), with the value it wrote.
fn concurrent_updates_of_overlapping_rows_emit_exactly_the_rows_each_updated(flavor: Flavor) {
    const ROWS: i32 = 40;
    const ROUNDS: usize = 25;
    let db = Db::with_people("concurrent");
    let names: Vec<String> = (0..ROWS).map(|i| format!("r{i}")).collect();
    seed(&db, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let emitter = emitter("concurrent");
    let rx = emitter.on::<Person>().subscribe();

    let writers: Vec<_> = (0..4)
        .map(|t: i32| {
            let mut conn = db.emitting(&emitter, flavor);
            std::thread::spawn(move || {
                let (low, high) = (t * 8 + 1, t * 8 + 16);
                let mut written = 0;
                for round in 0..ROUNDS {
                    let tag = format!("t{t}-{round}");
                    // Half the rounds select their rows by a column another thread sets.
                    let n = if round % 2 == 0 {
                        diesel::update(people::table.filter(people::id.between(low, high)))
                            .set(people::name.eq(&tag))
                            .execute(&mut conn)
                    } else {
                        diesel::update(
                            people::table
                                .filter(people::id.between(low, high))
                                .filter(people::active.eq(true).or(people::active.eq(false))),
                        )
                        .set((people::name.eq(&tag), people::active.eq(round % 4 == 1)))
                        .execute(&mut conn)
                    }
                    .unwrap();
                    assert_eq!(n, 16);
                    written += n;
                }
                written
            })
        })
        .collect();
    let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();

    let events = recv_n(&rx, written);
    let mut by_tag: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for ev in &events {
        assert_eq!(ev.action, Action::Update);
        by_tag
            .entry(ev.row.name.clone())
            .or_default()
            .insert(ev.row.id);
    }
    assert_eq!(by_tag.len(), 4 * ROUNDS);
    for (tag, ids) in by_tag {
        let t: i32 = tag[1..tag.find('-').unwrap()].parse().unwrap();
        let expected: BTreeSet<i32> = (t * 8 + 1..=t * 8 + 16).collect();
        assert_eq!(ids, expected, "rows of {tag}");
    }
    assert_empty(&rx);
    assert_eq!(emitter.stats().capture_errors, 0);
}
