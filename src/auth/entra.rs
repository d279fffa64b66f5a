//! Microsoft Entra client-credentials token provider (being written).
