//! Sealing an incident's caller details with a key of its own (crypto-shredding). The
//! details are stored in the log only sealed: ChaCha20-Poly1305 under the incident's data key,
//! with the incident's id as associated data (a sealed blob moved to another incident does
//! not open). The key lives beside the log ([`muster_store::EventStore::data_key`]); erasing
//! the caller's details destroys it, and the sealed bytes in the log, which stays intact and
//! verifiable, can never be read again.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use muster_store::DataKey;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::ids::IncidentId;
use crate::value::{CallerDetails, PersonName, PhoneNumber};

/// Caller details sealed under the incident's data key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SealedCaller {
    /// The algorithm: `chacha20poly1305`.
    pub alg: String,
    /// The nonce, base64url.
    pub nonce: String,
    /// The sealed details (JSON of name and call-back number) with their tag, base64url.
    pub sealed: String,
}

/// Why sealed details could not be opened or sealed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The bytes do not open with this key for this incident: altered, or another key.
    #[error("the sealed caller details do not open with this incident's key")]
    DoesNotOpen,
    /// Not a sealed blob this build reads.
    #[error("the sealed caller details are malformed: {0}")]
    Malformed(&'static str),
    /// The system's random source failed.
    #[error("no random nonce could be drawn")]
    Random,
}

const ALG: &str = "chacha20poly1305";

/// The plaintext: what [`CallerDetails`] holds in the clear.
#[derive(Serialize, Deserialize)]
struct Plain {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    call_back: Option<PhoneNumber>,
}

fn key(key: &DataKey) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &key.0).expect("a 32-byte key is a ChaCha20 key"),
    )
}

/// Seals `details` (their name and call-back number) for `incident`: the answer holds
/// neither in the clear. Details with neither are answered as they are.
pub fn seal(
    data_key: &DataKey,
    incident: IncidentId,
    details: &CallerDetails,
) -> Result<CallerDetails, SealError> {
    if details.name.is_none() && details.call_back.is_none() {
        return Ok(details.clone());
    }
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Random)?;
    let mut buffer = serde_json::to_vec(&Plain {
        name: details.name.clone(),
        call_back: details.call_back.clone(),
    })
    .expect("caller details serialize");
    key(data_key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(incident.as_uuid().as_bytes()),
            &mut buffer,
        )
        .map_err(|_| SealError::DoesNotOpen)?;
    Ok(CallerDetails {
        name: None,
        call_back: None,
        sealed: Some(SealedCaller {
            alg: ALG.to_owned(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            sealed: URL_SAFE_NO_PAD.encode(buffer),
        }),
    })
}

/// The details in the clear: as they are when they were never sealed, opened with the
/// incident's key when they were.
pub fn open(
    data_key: &DataKey,
    incident: IncidentId,
    details: &CallerDetails,
) -> Result<CallerDetails, SealError> {
    let Some(sealed) = &details.sealed else {
        return Ok(details.clone());
    };
    if sealed.alg != ALG {
        return Err(SealError::Malformed("unknown algorithm"));
    }
    let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
        .decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(SealError::Malformed("bad nonce"))?;
    let mut buffer = URL_SAFE_NO_PAD
        .decode(&sealed.sealed)
        .map_err(|_| SealError::Malformed("not base64url"))?;
    let plain = key(data_key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(incident.as_uuid().as_bytes()),
            &mut buffer,
        )
        .map_err(|_| SealError::DoesNotOpen)?;
    let plain: Plain =
        serde_json::from_slice(plain).map_err(|_| SealError::Malformed("not caller details"))?;
    Ok(CallerDetails {
        name: plain.name,
        call_back: plain.call_back,
        sealed: None,
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn details() -> CallerDetails {
        CallerDetails {
            name: Some(PersonName::parse("Sealed Callerson").unwrap()),
            call_back: Some(PhoneNumber::parse("+358401112223").unwrap()),
            sealed: None,
        }
    }

    #[test]
    fn sealed_details_open_with_their_key_for_their_incident_only() {
        let k = DataKey::random();
        let incident = IncidentId::from_uuid(Uuid::from_u128(1));
        let sealed = seal(&k, incident, &details()).unwrap();
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(
            !text.contains("Callerson") && !text.contains("1112223"),
            "{text}"
        );
        assert_eq!(open(&k, incident, &sealed).unwrap(), details());
        let other = IncidentId::from_uuid(Uuid::from_u128(2));
        assert_eq!(open(&k, other, &sealed), Err(SealError::DoesNotOpen));
        assert_eq!(
            open(&DataKey::random(), incident, &sealed),
            Err(SealError::DoesNotOpen)
        );
        let mut altered = sealed.clone();
        let s = altered.sealed.as_mut().unwrap();
        s.sealed = s.sealed.replacen(
            &s.sealed[..1],
            if &s.sealed[..1] == "A" { "B" } else { "A" },
            1,
        );
        assert_eq!(open(&k, incident, &altered), Err(SealError::DoesNotOpen));
        // Two seals of the same details differ (fresh nonces).
        assert_ne!(seal(&k, incident, &details()).unwrap(), sealed);
        // Nothing to seal: as it is.
        assert_eq!(
            seal(&k, incident, &CallerDetails::default()).unwrap(),
            CallerDetails::default()
        );
    }
}
