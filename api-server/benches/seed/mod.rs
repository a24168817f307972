//! A registry of realistic size for the benchmarks, written fast: persons (PII encrypted and
//! blind-indexed with the server's key ring, as the API stores it), households of four with
//! their members, and a plot per person, spread over ten areas, in batched INSERTs of arrays
//! as the owner role. The sync trigger fires for every row, as for any write; no audit events
//! are written (the seed is not a history).

use std::time::{Duration, Instant};

use dfr_api::crypto::KeyRing;
use sqlx::PgPool;
use uuid::Uuid;

pub const AREAS: usize = 10;
const BATCH: usize = 5_000;
const SYLLABLES: &[&str] = &[
    "fa", "ka", "la", "ma", "na", "pa", "sa", "ta", "va", "fe", "ke", "le", "me", "ne", "po", "so",
    "to", "tu", "fi", "ki", "li", "mo", "ni", "si",
];
const GIVEN: &[&str] = &[
    "Sione", "Mele", "Viliami", "Ana", "Tevita", "Losa", "Semisi", "Salote", "Sitani", "Lupe",
    "Pita", "Ofa", "Tomasi", "Seini", "Siaosi", "Vika", "Feleti", "Kalo", "Manu", "Heilala",
];

/// The area of the n-th area (TO-01 is made by the test support; the others here).
pub fn area(n: usize) -> String {
    format!("TO-{:02}", n + 1)
}

/// A family name of three syllables: 13,824 of them, so a four-letter prefix finds a few
/// hundred persons of 100,000 and a page of 20 in one area needs a real search.
pub fn family_name(i: usize) -> String {
    let n = SYLLABLES.len();
    let name: String = [i % n, (i / n) % n, (i / n / n) % n]
        .iter()
        .map(|&s| SYLLABLES[s])
        .collect();
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

pub struct Seeded {
    /// Person ids by area, in the order they were made.
    pub persons: Vec<Vec<Uuid>>,
    pub households: usize,
    pub plots: usize,
    pub took: Duration,
}

/// Makes the areas TO-02.. and `persons` persons (a household per four, a plot each).
pub async fn registry(owner: &PgPool, ring: &KeyRing, persons: usize) -> Seeded {
    let started = Instant::now();
    for n in 1..AREAS {
        sqlx::query(
            "INSERT INTO areas (code, parent_code, name, level) VALUES ($1, 'TO', $1, 1) \
             ON CONFLICT (code) DO NOTHING",
        )
        .bind(area(n))
        .execute(owner)
        .await
        .unwrap();
    }
    let seeder = Uuid::new_v4();
    let mut by_area = vec![Vec::new(); AREAS];
    let (mut households, mut plots) = (0, 0);
    let mut start = 0;
    while start < persons {
        let end = (start + BATCH).min(persons);
        let ids: Vec<Uuid> = (start..end).map(|_| Uuid::new_v4()).collect();
        // Four consecutive persons share an area and a household.
        let areas: Vec<String> = (start..end).map(|i| area((i / 4) % AREAS)).collect();
        let nationals: Vec<String> = (start..end).map(|i| format!("SEED{i:08}")).collect();
        let ciphers: Vec<String> = nationals.iter().map(|n| ring.encrypt(n).unwrap()).collect();
        let indexes: Vec<String> = nationals
            .iter()
            .map(|n| ring.blind_index("TON-NID", n))
            .collect();
        let last4: Vec<String> = nationals
            .iter()
            .map(|n| n[n.len() - 4..].to_string())
            .collect();
        let given: Vec<String> = (start..end)
            .map(|i| GIVEN[i % GIVEN.len()].to_string())
            .collect();
        let family: Vec<String> = (start..end).map(|i| family_name(i / 4 * 7919)).collect();
        let phones: Vec<String> = (start..end)
            .map(|i| ring.encrypt(&format!("+676{:07}", i % 10_000_000)).unwrap())
            .collect();
        sqlx::query(
            "INSERT INTO persons (id, national_id_system, national_id_cipher, national_id_index, \
             national_id_last4, given_name, family_name, sex, birth_date, phone_cipher, area_code, updated_by) \
             SELECT id, 'TON-NID', c, x, l4, g, f, 1, date '1970-01-01' + (random() * 15000)::int, ph, a, $9 \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
               AS t (id, c, x, l4, g, f, ph, a)",
        )
        .bind(&ids)
        .bind(&ciphers)
        .bind(&indexes)
        .bind(&last4)
        .bind(&given)
        .bind(&family)
        .bind(&phones)
        .bind(&areas)
        .bind(seeder)
        .execute(owner)
        .await
        .unwrap();
        // A household per four persons (the first the head), a plot per person.
        let heads: Vec<usize> = (0..ids.len()).step_by(4).collect();
        let household_ids: Vec<Uuid> = heads.iter().map(|_| Uuid::new_v4()).collect();
        let household_areas: Vec<String> = heads.iter().map(|&h| areas[h].clone()).collect();
        sqlx::query(
            "INSERT INTO households (id, area_code, updated_by) \
             SELECT id, a, $3 FROM unnest($1::uuid[], $2::text[]) AS t (id, a)",
        )
        .bind(&household_ids)
        .bind(&household_areas)
        .bind(seeder)
        .execute(owner)
        .await
        .unwrap();
        let (mut member_households, mut members, mut roles) = (Vec::new(), Vec::new(), Vec::new());
        for (k, &head) in heads.iter().enumerate() {
            for (j, id) in ids.iter().enumerate().skip(head).take(4) {
                member_households.push(household_ids[k]);
                members.push(*id);
                roles.push(if j == head { "head" } else { "child" });
            }
        }
        sqlx::query(
            "INSERT INTO household_members (household_id, person_id, role) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])",
        )
        .bind(&member_households)
        .bind(&members)
        .bind(&roles)
        .execute(owner)
        .await
        .unwrap();
        let plot_ids: Vec<Uuid> = ids.iter().map(|_| Uuid::new_v4()).collect();
        sqlx::query(
            "INSERT INTO plots (id, person_id, area_code, geometry, area_ha, tenure, land_use, updated_by) \
             SELECT id, p, a, jsonb_build_object('type', 'Point', 'coordinates', \
               jsonb_build_array(-175.2 + random() / 10, -21.1 - random() / 10)), NULL, 'customary', 'cropland', $4 \
             FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS t (id, p, a)",
        )
        .bind(&plot_ids)
        .bind(&ids)
        .bind(&areas)
        .bind(seeder)
        .execute(owner)
        .await
        .unwrap();
        for (id, code) in ids.iter().zip(&areas) {
            let n = code[3..].parse::<usize>().unwrap_or(1) - 1;
            by_area[n].push(*id);
        }
        households += household_ids.len();
        plots += plot_ids.len();
        start = end;
    }
    sqlx::query("ANALYZE").execute(owner).await.unwrap();
    Seeded {
        persons: by_area,
        households,
        plots,
        took: started.elapsed(),
    }
}
