//! Portal texts in English, French and German, and the choice of language from the
//! visitor's `Accept-Language` or an explicit `lang` choice.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
    De,
}

pub const ALL: [Lang; 3] = [Lang::En, Lang::Fr, Lang::De];

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::De => "de",
        }
    }

    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Fr => "Français",
            Lang::De => "Deutsch",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            "de" => Some(Lang::De),
            _ => None,
        }
    }

    /// Picks the best language: an explicit choice, else `Accept-Language` by q-value.
    pub fn negotiate(explicit: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(l) = explicit.and_then(Lang::from_code) {
            return l;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept_language.unwrap_or("").split(',').take(20) {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("");
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(l) = Lang::from_code(tag)
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, l));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }

    pub fn t(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::Fr => &FR,
            Lang::De => &DE,
        }
    }
}

/// Every text of the portal pages.
#[derive(Debug)]
pub struct Texts {
    pub portal_title: &'static str,
    pub intro: &'static str,
    pub key_label: &'static str,
    pub key_hint: &'static str,
    pub name_label: &'static str,
    pub submit: &'static str,
    pub reps_heading: &'static str,
    pub reps_hint: &'static str,
    pub reps_none: &'static str,
    pub start_with: &'static str,
    pub err_format: &'static str,
    pub err_wrong: &'static str,
    pub err_expired: &'static str,
    pub err_used: &'static str,
    pub err_limited: &'static str,
    pub err_rep_gone: &'static str,
    pub err_ticket: &'static str,
    pub privacy: &'static str,
    pub language: &'static str,
    pub dl_title: &'static str,
    pub dl_with_rep: &'static str,
    pub dl_button: &'static str,
    pub dl_step1: &'static str,
    pub dl_step2: &'static str,
    pub dl_step3: &'static str,
    pub dl_linux_note: &'static str,
    pub dl_other: &'static str,
    pub dl_missing: &'static str,
    pub dl_detected: &'static str,
    pub dl_valid_until: &'static str,
}

static EN: Texts = Texts {
    portal_title: "Get help from our support team",
    intro: "Your technician gave you a 7-digit session key. Type it below to start a support session.",
    key_label: "Session key",
    key_hint: "7 digits, for example 123 4567",
    name_label: "Your name (optional)",
    submit: "Start",
    reps_heading: "Or choose your technician",
    reps_hint: "Only if your technician asked you to.",
    reps_none: "No technician is available right now.",
    start_with: "Start a session with",
    err_format: "A session key has exactly 7 digits. Please check it and try again.",
    err_wrong: "This session key is not valid. Please check the digits, or ask your technician for a new key.",
    err_expired: "This session key has expired. Please ask your technician for a new one.",
    err_used: "This session key has already been used. Please ask your technician for a new one.",
    err_limited: "Too many attempts. Please wait a minute, then try again.",
    err_rep_gone: "This technician is no longer available. Please choose another or use a session key.",
    err_ticket: "This download link is no longer valid. Please enter your session key again or ask your technician for a new one.",
    privacy: "Your technician sees and does only what you allow, and you can end the session at any time. The connection stays on your organisation's own support server.",
    language: "Language",
    dl_title: "Your support session is ready",
    dl_with_rep: "You are about to start a support session with",
    dl_button: "Download the support program",
    dl_step1: "Download the support program with the button below.",
    dl_step2: "Open the downloaded file. If your computer asks whether to run it, choose Run.",
    dl_step3: "A window opens: read and accept the terms, then wait for your technician.",
    dl_linux_note: "On Linux, first allow the file to run: right-click it, choose Properties, then Permissions, and tick \"Allow executing file as program\".",
    dl_other: "Other systems",
    dl_missing: "not available on this support server yet",
    dl_detected: "for your computer",
    dl_valid_until: "This download works until",
};

static FR: Texts = Texts {
    portal_title: "Obtenir de l'aide de notre équipe d'assistance",
    intro: "Votre technicien vous a donné une clé de session à 7 chiffres. Saisissez-la ci-dessous pour démarrer une session d'assistance.",
    key_label: "Clé de session",
    key_hint: "7 chiffres, par exemple 123 4567",
    name_label: "Votre nom (facultatif)",
    submit: "Démarrer",
    reps_heading: "Ou choisissez votre technicien",
    reps_hint: "Seulement si votre technicien vous l'a demandé.",
    reps_none: "Aucun technicien n'est disponible pour le moment.",
    start_with: "Démarrer une session avec",
    err_format: "Une clé de session comporte exactement 7 chiffres. Vérifiez-la et réessayez.",
    err_wrong: "Cette clé de session n'est pas valide. Vérifiez les chiffres ou demandez une nouvelle clé à votre technicien.",
    err_expired: "Cette clé de session a expiré. Demandez-en une nouvelle à votre technicien.",
    err_used: "Cette clé de session a déjà été utilisée. Demandez-en une nouvelle à votre technicien.",
    err_limited: "Trop de tentatives. Patientez une minute, puis réessayez.",
    err_rep_gone: "Ce technicien n'est plus disponible. Choisissez-en un autre ou utilisez une clé de session.",
    err_ticket: "Ce lien de téléchargement n'est plus valable. Saisissez à nouveau votre clé de session ou demandez-en une nouvelle à votre technicien.",
    privacy: "Votre technicien ne voit et ne fait que ce que vous autorisez, et vous pouvez mettre fin à la session à tout moment. La connexion reste sur le serveur d'assistance de votre établissement.",
    language: "Langue",
    dl_title: "Votre session d'assistance est prête",
    dl_with_rep: "Vous êtes sur le point de commencer une session d'assistance avec",
    dl_button: "Télécharger le programme d'assistance",
    dl_step1: "Téléchargez le programme d'assistance avec le bouton ci-dessous.",
    dl_step2: "Ouvrez le fichier téléchargé. Si votre ordinateur demande s'il faut l'exécuter, choisissez Exécuter.",
    dl_step3: "Une fenêtre s'ouvre : lisez et acceptez les conditions, puis attendez votre technicien.",
    dl_linux_note: "Sous Linux, autorisez d'abord l'exécution du fichier : clic droit, Propriétés, puis Permissions, et cochez « Autoriser l'exécution du fichier comme un programme ».",
    dl_other: "Autres systèmes",
    dl_missing: "pas encore disponible sur ce serveur d'assistance",
    dl_detected: "pour votre ordinateur",
    dl_valid_until: "Ce téléchargement fonctionne jusqu'à",
};

static DE: Texts = Texts {
    portal_title: "Hilfe von unserem Support-Team",
    intro: "Ihr Support-Techniker hat Ihnen einen 7-stelligen Sitzungsschlüssel gegeben. Geben Sie ihn unten ein, um eine Support-Sitzung zu starten.",
    key_label: "Sitzungsschlüssel",
    key_hint: "7 Ziffern, zum Beispiel 123 4567",
    name_label: "Ihr Name (freiwillig)",
    submit: "Starten",
    reps_heading: "Oder wählen Sie Ihren Support-Techniker",
    reps_hint: "Nur wenn Ihr Support-Techniker Sie darum gebeten hat.",
    reps_none: "Zurzeit ist kein Support-Techniker verfügbar.",
    start_with: "Sitzung starten mit",
    err_format: "Ein Sitzungsschlüssel hat genau 7 Ziffern. Bitte prüfen Sie ihn und versuchen Sie es erneut.",
    err_wrong: "Dieser Sitzungsschlüssel ist ungültig. Bitte prüfen Sie die Ziffern oder bitten Sie Ihren Support-Techniker um einen neuen Schlüssel.",
    err_expired: "Dieser Sitzungsschlüssel ist abgelaufen. Bitte bitten Sie Ihren Support-Techniker um einen neuen.",
    err_used: "Dieser Sitzungsschlüssel wurde bereits verwendet. Bitte bitten Sie Ihren Support-Techniker um einen neuen.",
    err_limited: "Zu viele Versuche. Bitte warten Sie eine Minute und versuchen Sie es dann erneut.",
    err_rep_gone: "Dieser Support-Techniker ist nicht mehr verfügbar. Bitte wählen Sie einen anderen oder verwenden Sie einen Sitzungsschlüssel.",
    err_ticket: "Dieser Download-Link ist nicht mehr gültig. Bitte geben Sie Ihren Sitzungsschlüssel erneut ein oder bitten Sie um einen neuen.",
    privacy: "Ihr Support-Techniker sieht und tut nur, was Sie erlauben, und Sie können die Sitzung jederzeit beenden. Die Verbindung bleibt auf dem Support-Server Ihrer Organisation.",
    language: "Sprache",
    dl_title: "Ihre Support-Sitzung ist bereit",
    dl_with_rep: "Sie beginnen gleich eine Support-Sitzung mit",
    dl_button: "Support-Programm herunterladen",
    dl_step1: "Laden Sie das Support-Programm mit der Schaltfläche unten herunter.",
    dl_step2: "Öffnen Sie die heruntergeladene Datei. Wenn Ihr Computer fragt, ob sie ausgeführt werden soll, wählen Sie Ausführen.",
    dl_step3: "Ein Fenster öffnet sich: Lesen und akzeptieren Sie die Bedingungen und warten Sie dann auf Ihren Support-Techniker.",
    dl_linux_note: "Unter Linux erlauben Sie zuerst das Ausführen: Rechtsklick auf die Datei, Eigenschaften, dann Zugriffsrechte, und „Datei als Programm ausführen“ ankreuzen.",
    dl_other: "Andere Systeme",
    dl_missing: "auf diesem Support-Server noch nicht verfügbar",
    dl_detected: "für Ihren Computer",
    dl_valid_until: "Dieser Download funktioniert bis",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(
            Lang::negotiate(None, Some("de-DE,de;q=0.9,en;q=0.8")),
            Lang::De
        );
        assert_eq!(
            Lang::negotiate(None, Some("es,fr;q=0.5,en;q=0.4")),
            Lang::Fr
        );
        assert_eq!(Lang::negotiate(Some("fr"), Some("de")), Lang::Fr);
        assert_eq!(Lang::negotiate(Some("xx"), None), Lang::En);
        assert_eq!(Lang::negotiate(None, Some(";;;,q=,")), Lang::En);
    }

    #[test]
    fn no_text_is_empty() {
        for l in ALL {
            let dbg = format!("{:?}", l.t());
            assert!(!dbg.contains(": \"\""), "{dbg}");
        }
    }
}
