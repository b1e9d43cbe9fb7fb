//! Every statement of the criterion groups again, the sides interleaved round by
//! round (see `common`): the ratios to trust when the machine is busy, with the
//! `RETURNING` floor and a listener that stays awake beside them.

use super::*;

/// The label of the lines measuring an emitting connection whose listener stays
/// awake `AWAKE` (`ListenerBuilder::stay_awake`) against the plain connection.
const AWAKE_LABEL: &str = "  listener awake 500 us";

/// Every statement again with the two sides interleaved (see `common`): the
/// ratios to trust when the machine is busy.
pub fn interleaved(s: &mut Bench, full: bool) {
    let (rounds, bulk_rounds) = if full { (200, 24) } else { (2, 2) };
    common::header(&format!(
        "{rounds} rounds of 10 single-row statements a side, {bulk_rounds} rounds of 1 bulk statement"
    ));
    let nothing = |_: &mut Bench| {};
    let side = |emitting| {
        if emitting {
            Side::Emitting
        } else {
            Side::Plain
        }
    };
    let row = new_user(1);
    s.setup("TRUNCATE users, audit_log");
    common::interleaved(s, "pg_insert_single", rounds, 10, nothing, |s, e| {
        exec(s, side(e), diesel::insert_into(users::table).values(&row));
    });
    // The floor: what RETURNING and loading the rows with plain Diesel cost alone.
    let returning = |r| if r { Side::PlainReturning } else { Side::Plain };
    let sides = ["returning", "plain"];
    common::interleaved_as(s, common::FLOOR, sides, rounds, 10, nothing, |s, r| {
        run!(
            s,
            returning(r),
            diesel::insert_into(users::table).values(&row)
        );
    });
    let awake = |a| if a { Side::Awake } else { Side::Plain };
    let awake_sides = ["awake", "plain"];
    common::interleaved_as(s, AWAKE_LABEL, awake_sides, rounds, 10, nothing, |s, a| {
        exec(s, awake(a), diesel::insert_into(users::table).values(&row));
    });
    s.seed("users", KEYED_ROWS);
    // Each update renames the next of the keyed rows, cycling.
    let mut key = 0;
    let mut next_update = || {
        key = key % KEYED_ROWS + 1;
        let name = if key % 2 == 0 { "renamed" } else { "original" };
        diesel::update(users::table.find(key)).set(users::name.eq(name))
    };
    common::interleaved(s, "pg_update_by_key", rounds, 10, nothing, |s, e| {
        assert_eq!(exec(s, side(e), next_update()), 1);
    });
    common::interleaved_as(s, common::FLOOR, sides, rounds, 10, nothing, |s, r| {
        assert_eq!(run!(s, returning(r), next_update()), 1);
    });
    common::interleaved_as(s, AWAKE_LABEL, awake_sides, rounds, 10, nothing, |s, a| {
        assert_eq!(exec(s, awake(a), next_update()), 1);
    });
    let first = s.next_id;
    // Rows for the delete line and its floor: each runs warm-up and measured rounds
    // of 10 statements a side.
    let total = (rounds + rounds / 10) * 10 * 2 * 2;
    s.setup(&format!(
        "INSERT INTO users (id, name, email, active)
           SELECT g, 'gone ' || g, 'gone' || g || '@example.com', false
           FROM generate_series({first}, {}) g",
        first + total as i32 - 1
    ));
    common::interleaved(s, "pg_delete_by_key", rounds, 10, nothing, |s, e| {
        let id = s.next_id;
        s.next_id += 1;
        assert_eq!(exec(s, side(e), diesel::delete(users::table.find(id))), 1);
    });
    common::interleaved_as(s, common::FLOOR, sides, rounds, 10, nothing, |s, r| {
        let id = s.next_id;
        s.next_id += 1;
        assert_eq!(
            run!(s, returning(r), diesel::delete(users::table.find(id))),
            1
        );
    });
    // A/A: the same statement on two plain connections; how far from 1.000 noise goes.
    common::interleaved(s, "A/A plain vs plain", rounds, 10, nothing, |s, first| {
        let query = diesel::insert_into(audit_log::table).values((
            audit_log::name.eq(&row.name),
            audit_log::email.eq(&row.email),
            audit_log::active.eq(row.active),
        ));
        let conn = if first { &mut s.plain2 } else { &mut s.plain };
        query.execute(conn).expect("benchmark statement");
    });
    common::interleaved(s, "pg_insert_no_model", rounds, 10, nothing, |s, e| {
        let query = diesel::insert_into(audit_log::table).values((
            audit_log::name.eq(&row.name),
            audit_log::email.eq(&row.email),
            audit_log::active.eq(row.active),
        ));
        exec(s, side(e), query);
    });
    let rows: Vec<NewUser> = (0..BATCH_ROWS).map(new_user).collect();
    // The listener's work on the previous round's events must not land on the other
    // side's clock: settle before each bulk statement.
    let truncate = |s: &mut Bench| {
        s.settle();
        s.setup("TRUNCATE users");
    };
    common::interleaved(
        s,
        "pg_insert_batch_1000",
        bulk_rounds,
        1,
        truncate,
        |s, e| {
            let query = diesel::insert_into(users::table).values(&rows);
            assert_eq!(exec(s, side(e), query), BATCH_ROWS);
        },
    );
    common::interleaved_as(s, common::FLOOR, sides, bulk_rounds, 1, truncate, |s, r| {
        let n = run!(
            s,
            returning(r),
            diesel::insert_into(users::table).values(&rows)
        );
        assert_eq!(n, BATCH_ROWS);
    });
    // COPY FROM: straight into the table on the plain side; through the stand-in
    // temporary table and INSERT ... SELECT ... RETURNING on the emitting side.
    let copied: Vec<CopiedUser> = (0..BULK_ROWS as usize)
        .map(|i| {
            let u = new_user(i);
            CopiedUser {
                name: u.name,
                email: u.email,
                active: u.active,
            }
        })
        .collect();
    common::interleaved(s, "pg_copy_from_10000", bulk_rounds, 1, truncate, |s, e| {
        let copy = diesel::copy_from(users::table).from_insertable(&copied);
        let n = if e {
            copy.execute(&mut s.emitting)
        } else {
            copy.execute(&mut s.plain)
        };
        assert_eq!(n.expect("benchmark COPY"), BULK_ROWS as usize);
    });
    s.seed("users", BULK_ROWS);
    s.setup("UPDATE users SET active = NOT active");
    let vacuum = |s: &mut Bench| {
        s.settle();
        s.setup("VACUUM users");
    };
    let mut flip = false;
    common::interleaved(s, "pg_update_10000_rows", bulk_rounds, 1, vacuum, |s, e| {
        flip = !flip;
        let query = diesel::update(users::table.filter(users::id.le(BULK_ROWS)))
            .set(users::active.eq(flip));
        assert_eq!(exec(s, side(e), query), BULK_ROWS as usize);
    });
    common::interleaved_as(s, common::FLOOR, sides, bulk_rounds, 1, vacuum, |s, r| {
        flip = !flip;
        let query = diesel::update(users::table.filter(users::id.le(BULK_ROWS)))
            .set(users::active.eq(flip));
        assert_eq!(run!(s, returning(r), query), BULK_ROWS as usize);
    });
    s.settle();
    println!();
}
