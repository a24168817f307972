//! The schema's constraints by name (as the migrations create them), and what each one tells
//! a client when it refuses a write. Handlers check their input first; these are the refusals
//! only the database can decide (an id or code already taken, a write racing another) and a
//! safety net for the rest. A test checks that every name here exists in the migrated schema.

/// What kind of rule a constraint is, which decides the answer's status and code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The primary key of a record whose id the client may choose: 409 `duplicate_id`.
    RecordId,
    /// The live national ID of a person: 409 `duplicate_national_id`.
    NationalId,
    /// Another unique rule: 409 `conflict`.
    Unique,
    /// A foreign key: the field names a record that does not exist, 422 `validation_failed`.
    Reference,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Constraint {
    pub name: &'static str,
    pub kind: Kind,
    /// The request field it is about, as the client spells it.
    pub field: &'static str,
    pub message: &'static str,
}

pub const PERSON_ID: Constraint = Constraint {
    name: "persons_pkey",
    kind: Kind::RecordId,
    field: "id",
    message: "a person with this id already exists with other content; a new person needs a new id",
};

pub const FORM_SUBMISSION_ID: Constraint = Constraint {
    name: "form_submissions_pkey",
    kind: Kind::RecordId,
    field: "id",
    message: "another submission has this instance id; a new submission needs a new id",
};

pub const KNOWN: &[Constraint] = &[
    PERSON_ID,
    FORM_SUBMISSION_ID,
    Constraint {
        name: "form_definitions_pkey",
        kind: Kind::Unique,
        field: "key",
        message: "another version of this form was published at the same moment; publish again",
    },
    Constraint {
        name: "persons_national_id",
        kind: Kind::NationalId,
        field: "nationalId",
        message: "a person with this national ID already exists",
    },
    Constraint {
        name: "persons_area_code_fkey",
        kind: Kind::Reference,
        field: "areaCode",
        message: "is not a known administrative area",
    },
    Constraint {
        name: "areas_pkey",
        kind: Kind::Unique,
        field: "code",
        message: "an area with this code already exists",
    },
    Constraint {
        name: "areas_parent_code_fkey",
        kind: Kind::Reference,
        field: "parentCode",
        message: "is not a known area",
    },
    Constraint {
        name: "plots_pkey",
        kind: Kind::RecordId,
        field: "id",
        message: "a plot with this id already exists",
    },
    Constraint {
        name: "plots_person_id_fkey",
        kind: Kind::Reference,
        field: "personId",
        message: "no such person",
    },
    Constraint {
        name: "households_pkey",
        kind: Kind::RecordId,
        field: "id",
        message: "a household with this id already exists",
    },
    Constraint {
        name: "household_members_pkey",
        kind: Kind::Unique,
        field: "members",
        message: "a person is listed twice",
    },
    Constraint {
        name: "household_one_head",
        kind: Kind::Unique,
        field: "members",
        message: "a household has exactly one head",
    },
    Constraint {
        name: "household_members_person_id_fkey",
        kind: Kind::Reference,
        field: "members.personId",
        message: "no such person",
    },
    Constraint {
        name: "farmer_profiles_pkey",
        kind: Kind::RecordId,
        field: "id",
        message: "a farmer profile with this id already exists",
    },
    Constraint {
        name: "farmer_profiles_person_id_key",
        kind: Kind::Unique,
        field: "personId",
        message: "the person already has a farmer profile (GET /api/dfr/farmer-profiles/{personId})",
    },
    Constraint {
        name: "farmer_profiles_person_id_fkey",
        kind: Kind::Reference,
        field: "personId",
        message: "no such person",
    },
    Constraint {
        name: "holdings_pkey",
        kind: Kind::RecordId,
        field: "id",
        message: "a holding with this id already exists",
    },
    Constraint {
        name: "holdings_plot_id_fkey",
        kind: Kind::Reference,
        field: "plotId",
        message: "no such plot",
    },
    Constraint {
        name: "consents_pkey",
        kind: Kind::RecordId,
        field: "id",
        message: "a consent with this id already exists",
    },
    Constraint {
        name: "consents_person_id_fkey",
        kind: Kind::Reference,
        field: "personId",
        message: "no such person",
    },
    Constraint {
        name: "users_username_key",
        kind: Kind::Unique,
        field: "username",
        message: "a user with this username already exists",
    },
];

/// Which constraint a database error reports, when it is a violation the client caused.
#[derive(Debug, PartialEq, Eq)]
pub enum Violation {
    Known(&'static Constraint),
    /// A unique rule not in `KNOWN`: still the client's conflict, not a server error.
    OtherUnique,
}

pub fn violation(error: &sqlx::Error) -> Option<Violation> {
    let sqlx::Error::Database(database) = error else {
        return None;
    };
    let by_name = database
        .constraint()
        .and_then(|name| KNOWN.iter().find(|known| known.name == name));
    match (by_name, database.kind()) {
        (Some(known), _) => Some(Violation::Known(known)),
        (None, sqlx::error::ErrorKind::UniqueViolation) => Some(Violation::OtherUnique),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_listed_once_and_every_entry_names_its_field() {
        for (i, constraint) in KNOWN.iter().enumerate() {
            assert!(
                KNOWN[..i].iter().all(|other| other.name != constraint.name),
                "{} is listed twice",
                constraint.name
            );
            assert!(!constraint.field.is_empty() && !constraint.message.is_empty());
        }
    }

    #[test]
    fn errors_other_than_database_errors_are_no_violation() {
        assert_eq!(violation(&sqlx::Error::RowNotFound), None);
    }
}
