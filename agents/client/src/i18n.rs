//! Every sentence the window shows, in English, French and German.
//!
//! The language is the one the customer chose on the portal (the ticket's `language`) when
//! it is one of ours, else the first of `LC_ALL`, `LC_MESSAGES`, `LANG` (POSIX order) that
//! names one, else English. Templates hold `{0}` where a value goes.
//!
//! Limits: errors raised below the UI (network, certificate pin) are English sentences;
//! refusals by the box are translated here from their code.

use lifeline_proto::agent::RefuseCode;
use lifeline_proto::remote::Permission;

use crate::env::Env;

/// A language the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
    De,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Fr, Lang::De];

    /// The tag sent to the relay ("en", "fr", "de").
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::De => "de",
        }
    }

    /// Parses "fr", "fr-CA", "fr_FR.UTF-8", "de_DE@euro"; `None` for other languages.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary: String = tag
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect::<String>()
            .to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            "de" => Some(Lang::De),
            _ => None,
        }
    }

    /// Chooses the language: the ticket's, else the environment's, else English.
    pub fn choose(ticket_language: &str, env: &Env) -> Lang {
        Lang::parse(ticket_language)
            .or_else(|| {
                ["LC_ALL", "LC_MESSAGES", "LANG"]
                    .iter()
                    .find_map(|name| env.get(name))
                    .and_then(Lang::parse)
            })
            .unwrap_or(Lang::En)
    }
}

/// The keys of all UI texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `{0}` = site name.
    WindowTitle,
    DefaultTitle,
    Connecting,
    TermsTitle,
    /// `{0}` = site name.
    TermsSummary,
    ShowFullTerms,
    HideFullTerms,
    FullTerms,
    Accept,
    Decline,
    Waiting,
    /// `{0}` = position.
    QueuePosition,
    KeepOpen,
    /// `{0}` = technician's name.
    ConnectedWith,
    /// `{0}` = technician's name.
    RepJoinedLine,
    /// `{0}` = technician's name.
    RepLeftLine,
    Technician,
    You,
    Send,
    EndSession,
    /// `{0}` = attempt number.
    Reconnecting,
    LinkRestored,
    EndedTitle,
    EndedByYou,
    EndedByRep,
    EndedBySystem,
    RefusedTitle,
    ErrorTitle,
    Close,
    CloseHint,
    RefusedVersion,
    RefusedTicketInvalid,
    RefusedTicketExpired,
    RefusedTicketUsed,
    RefusedSessionEnded,
    RefusedTooManyAttempts,
    RefusedBusy,
    /// `{0}` = technician's name.
    AskView,
    /// `{0}` = technician's name.
    AskControl,
    /// `{0}` = technician's name.
    AskClipboard,
    /// `{0}` = technician's name.
    AskFileTransfer,
    /// `{0}` = technician's name.
    AskSystemInfo,
    /// `{0}` = technician's name.
    AskShell,
    /// `{0}` = technician's name.
    AskElevatedShell,
    Allow,
    Deny,
    /// `{0}` = seconds left.
    AutoDeny,
    /// `{0}` = technician's name.
    ActiveView,
    /// `{0}` = technician's name.
    ActiveControl,
    /// `{0}` = technician's name.
    ActiveOther,
    Stop,
    ShellOpen,
    ShellOpenElevated,
    CloseShell,
    ShellClosedLine,
    AskpassTitle,
    AskpassText,
    AskpassOk,
    AskpassCancel,
    /// A jump's question to the logged-in user (the title of its window).
    JumpAskTitle,
    /// `{0}` = representative, `{1}` = support site.
    JumpAskText,
    JumpAllow,
    JumpDecline,
    /// The button that sends a file to the technician (shown while file transfer stands).
    SendFile,
    /// The title of the file chooser it opens.
    ChooseFile,
    // The customer limits file transfer to one folder.
    /// The prompt's button that allows file transfer in one chosen folder only.
    AllowOneFolder,
    /// The title of the folder chooser it opens.
    ChooseSharedFolder,
    /// `{0}` = the shared folder's full path.
    SharedFolder,
    /// The button that ends file transfer.
    StopSharingFiles,
    PermView,
    PermControl,
    PermClipboard,
    PermFileTransfer,
    PermSystemInfo,
    PermShell,
    PermElevatedShell,
    /// `{0}` = a `Perm*` text.
    AllowedLine,
    /// `{0}` = a `Perm*` text.
    DeniedLine,
    /// `{0}` = a `Perm*` text.
    TimedOutLine,
    /// `{0}` = a `Perm*` text.
    StoppedLine,
    /// `{0}` = a `Perm*` text.
    UnavailableLine,
    /// Window title prefix while the screen is shared.
    SharingTitle,
    /// `{0}` = technician's name, `{1}` = program name, `{2}` = process id.
    AskEndProcess,
    /// `{0}` = program name and process id.
    ProcessEndedLine,
    /// `{0}` = program name and process id.
    ProcessKeptLine,
    /// The support button's entry in the applications menu; `{0}` = site name.
    ButtonName,
    ButtonInstalledTitle,
    /// `{0}` = the entry's name.
    ButtonInstalled,
    ButtonExpiredTitle,
    ButtonExpired,
    OpenPortal,
    /// `{0}` = technician's name.
    AskInstallJump,
    /// `{0}` = technician's name.
    AskInstallButton,
    InstalledJumpLine,
    InstalledButtonLine,
    InstallFailedLine,
}

impl Key {
    pub const ALL: [Key; 96] = [
        Key::WindowTitle,
        Key::DefaultTitle,
        Key::Connecting,
        Key::TermsTitle,
        Key::TermsSummary,
        Key::ShowFullTerms,
        Key::HideFullTerms,
        Key::FullTerms,
        Key::Accept,
        Key::Decline,
        Key::Waiting,
        Key::QueuePosition,
        Key::KeepOpen,
        Key::ConnectedWith,
        Key::RepJoinedLine,
        Key::RepLeftLine,
        Key::Technician,
        Key::You,
        Key::Send,
        Key::EndSession,
        Key::Reconnecting,
        Key::LinkRestored,
        Key::EndedTitle,
        Key::EndedByYou,
        Key::EndedByRep,
        Key::EndedBySystem,
        Key::RefusedTitle,
        Key::ErrorTitle,
        Key::Close,
        Key::CloseHint,
        Key::RefusedVersion,
        Key::RefusedTicketInvalid,
        Key::RefusedTicketExpired,
        Key::RefusedTicketUsed,
        Key::RefusedSessionEnded,
        Key::RefusedTooManyAttempts,
        Key::RefusedBusy,
        Key::AskView,
        Key::AskControl,
        Key::AskClipboard,
        Key::AskFileTransfer,
        Key::AskSystemInfo,
        Key::AskShell,
        Key::AskElevatedShell,
        Key::Allow,
        Key::Deny,
        Key::AutoDeny,
        Key::ActiveView,
        Key::ActiveControl,
        Key::ActiveOther,
        Key::Stop,
        Key::ShellOpen,
        Key::ShellOpenElevated,
        Key::CloseShell,
        Key::ShellClosedLine,
        Key::AskpassTitle,
        Key::AskpassText,
        Key::AskpassOk,
        Key::AskpassCancel,
        Key::JumpAskTitle,
        Key::JumpAskText,
        Key::JumpAllow,
        Key::JumpDecline,
        Key::SendFile,
        Key::ChooseFile,
        Key::AllowOneFolder,
        Key::ChooseSharedFolder,
        Key::SharedFolder,
        Key::StopSharingFiles,
        Key::PermView,
        Key::PermControl,
        Key::PermClipboard,
        Key::PermFileTransfer,
        Key::PermSystemInfo,
        Key::PermShell,
        Key::PermElevatedShell,
        Key::AllowedLine,
        Key::DeniedLine,
        Key::TimedOutLine,
        Key::StoppedLine,
        Key::UnavailableLine,
        Key::SharingTitle,
        Key::AskEndProcess,
        Key::ProcessEndedLine,
        Key::ProcessKeptLine,
        Key::ButtonName,
        Key::ButtonInstalledTitle,
        Key::ButtonInstalled,
        Key::ButtonExpiredTitle,
        Key::ButtonExpired,
        Key::OpenPortal,
        Key::AskInstallJump,
        Key::AskInstallButton,
        Key::InstalledJumpLine,
        Key::InstalledButtonLine,
        Key::InstallFailedLine,
    ];

    /// The key of the sentence explaining a refusal.
    pub fn for_refusal(code: RefuseCode) -> Key {
        match code {
            RefuseCode::IncompatibleVersion => Key::RefusedVersion,
            RefuseCode::TicketInvalid => Key::RefusedTicketInvalid,
            RefuseCode::TicketExpired => Key::RefusedTicketExpired,
            RefuseCode::TicketUsed => Key::RefusedTicketUsed,
            RefuseCode::SessionEnded => Key::RefusedSessionEnded,
            RefuseCode::TooManyAttempts => Key::RefusedTooManyAttempts,
            RefuseCode::Busy => Key::RefusedBusy,
        }
    }

    /// The question asked when the technician wants `permission`.
    pub fn ask(permission: Permission) -> Key {
        match permission {
            Permission::View => Key::AskView,
            Permission::Control => Key::AskControl,
            Permission::Clipboard => Key::AskClipboard,
            Permission::FileTransfer => Key::AskFileTransfer,
            Permission::SystemInfo => Key::AskSystemInfo,
            Permission::Shell => Key::AskShell,
            Permission::ElevatedShell => Key::AskElevatedShell,
        }
    }

    /// The name of `permission`, to go into the `*Line` sentences.
    pub fn name(permission: Permission) -> Key {
        match permission {
            Permission::View => Key::PermView,
            Permission::Control => Key::PermControl,
            Permission::Clipboard => Key::PermClipboard,
            Permission::FileTransfer => Key::PermFileTransfer,
            Permission::SystemInfo => Key::PermSystemInfo,
            Permission::Shell => Key::PermShell,
            Permission::ElevatedShell => Key::PermElevatedShell,
        }
    }
}

/// The texts of one language.
#[derive(Debug, Clone, Copy)]
pub struct Texts {
    pub lang: Lang,
}

impl Texts {
    pub fn new(lang: Lang) -> Self {
        Self { lang }
    }

    /// The text of `key`.
    pub fn get(&self, key: Key) -> &'static str {
        match self.lang {
            Lang::En => en(key),
            Lang::Fr => fr(key),
            Lang::De => de(key),
        }
    }

    /// The text of `key` with `{0}` replaced by `arg`.
    pub fn fmt(&self, key: Key, arg: impl std::fmt::Display) -> String {
        self.get(key).replace("{0}", &arg.to_string())
    }

    /// The window title for `site_name` (or the default title when it is blank).
    pub fn title(&self, site_name: &str) -> String {
        let site = site_name.trim();
        if site.is_empty() {
            self.get(Key::DefaultTitle).to_owned()
        } else {
            self.fmt(Key::WindowTitle, site)
        }
    }
}

fn en(key: Key) -> &'static str {
    match key {
        Key::WindowTitle => "{0} – Support",
        Key::DefaultTitle => "Lifeline Support",
        Key::Connecting => "Connecting to your support team…",
        Key::TermsTitle => "Before we start",
        Key::TermsSummary => {
            "A technician from {0} is ready to help you.\n\nThe technician can only see or do what you allow. You can end the session at any time with the “End session” button."
        }
        Key::ShowFullTerms => "Show full terms",
        Key::HideFullTerms => "Hide full terms",
        Key::FullTerms => {
            "Terms of this support session\n\n\
1. This program connects your computer to your organisation's support service, over an encrypted connection, for this one session only.\n\n\
2. The technician cannot see your screen, control your computer, transfer files or run commands unless you allow each of these when you are asked. You can withdraw any permission at any time.\n\n\
3. The session, including the chat, may be recorded by your organisation for quality and security reasons.\n\n\
4. You can end the session at any time with the “End session” button or by closing this window. Nothing keeps running on your computer afterwards.\n\n\
5. Do not share passwords in the chat unless your organisation's policy asks you to."
        }
        Key::Accept => "Accept",
        Key::Decline => "Decline",
        Key::Waiting => "Waiting for your technician…",
        Key::QueuePosition => "You are number {0} in line",
        Key::KeepOpen => "Please keep this window open.",
        Key::ConnectedWith => "Connected with {0}",
        Key::RepJoinedLine => "{0} joined the session.",
        Key::RepLeftLine => "{0} left the session.",
        Key::Technician => "Technician",
        Key::You => "You",
        Key::Send => "Send",
        Key::EndSession => "End session",
        Key::Reconnecting => "Connection lost, reconnecting (attempt {0})…",
        Key::LinkRestored => "Connection restored.",
        Key::EndedTitle => "Session ended",
        Key::EndedByYou => "You ended the session.",
        Key::EndedByRep => "The technician ended the session.",
        Key::EndedBySystem => "The session has ended.",
        Key::RefusedTitle => "The session could not start",
        Key::ErrorTitle => "Something went wrong",
        Key::Close => "Close",
        Key::CloseHint => "Thank you. You can close this window now.",
        Key::RefusedVersion => {
            "This program does not match the support box's version: download it again from the support portal."
        }
        Key::RefusedTicketInvalid => {
            "This download is not valid for this support box: download the program again from the support portal."
        }
        Key::RefusedTicketExpired => {
            "This download has expired: ask your technician for a new session key and download the program again."
        }
        Key::RefusedTicketUsed => {
            "This download has already been used for a session: ask your technician for a new session key."
        }
        Key::RefusedSessionEnded => "This session has already ended.",
        Key::RefusedTooManyAttempts => "Too many attempts: wait a few minutes and try again.",
        Key::RefusedBusy => {
            "The support team is busy right now: please try again in a few minutes."
        }
        Key::AskView => "{0} would like to see your screen.",
        Key::AskControl => "{0} would like to control your mouse and keyboard.",
        Key::AskClipboard => "{0} would like to exchange copied text with you (the clipboard).",
        Key::AskFileTransfer => "{0} would like to transfer files to and from your computer.",
        Key::AskSystemInfo => {
            "{0} would like to read information about your computer (system, disks, programs)."
        }
        Key::AskShell => "{0} would like to run commands on your computer, with your rights.",
        Key::AskElevatedShell => {
            "{0} would like to run commands as administrator. Your computer will then ask for the administrator password."
        }
        Key::Allow => "Allow",
        Key::Deny => "Deny",
        Key::AutoDeny => "Without an answer, this is refused in {0} s.",
        Key::AskEndProcess => {
            "{0} would like to end the program “{1}” (process {2}) on your computer. Unsaved work in it may be lost."
        }
        Key::ProcessEndedLine => "The program {0} was asked to end.",
        Key::ProcessKeptLine => "The program {0} was not ended.",
        Key::ActiveView => "{0} can see your screen",
        Key::ActiveControl => "{0} can control your computer",
        Key::ActiveOther => "You allowed {0}",
        Key::Stop => "Stop",
        Key::ShellOpen => "A command shell is open",
        Key::ShellOpenElevated => "A command shell is open (as administrator)",
        Key::CloseShell => "Close it",
        Key::ShellClosedLine => "The command shell was closed.",
        Key::AskpassTitle => "Administrator password",
        Key::AskpassText => {
            "Your technician asked to run commands as administrator. Type your password to allow it, or press Cancel to refuse. The password stays on this computer."
        }
        Key::AskpassOk => "Allow",
        Key::AskpassCancel => "Cancel",
        Key::JumpAskTitle => "Remote support request",
        Key::JumpAskText => {
            "{0} from {1} wants to connect to this computer. Nothing happens unless you allow it; without an answer within a minute the request is declined."
        }
        Key::JumpAllow => "Allow",
        Key::JumpDecline => "Decline",
        Key::SendFile => "Send a file…",
        Key::ChooseFile => "Choose a file to send to the technician",
        Key::AllowOneFolder => "Allow only one folder…",
        Key::ChooseSharedFolder => "Choose the only folder the technician may use",
        Key::SharedFolder => "Shared folder: {0}",
        Key::StopSharingFiles => "Stop sharing files",
        Key::PermView => "screen viewing",
        Key::PermControl => "remote control",
        Key::PermClipboard => "clipboard sharing",
        Key::PermFileTransfer => "file transfer",
        Key::PermSystemInfo => "system information",
        Key::PermShell => "a command shell",
        Key::PermElevatedShell => "an administrator command shell",
        Key::AllowedLine => "You allowed {0}.",
        Key::DeniedLine => "You refused {0}.",
        Key::TimedOutLine => "No answer: {0} was refused.",
        Key::StoppedLine => "You stopped {0}.",
        Key::UnavailableLine => "The technician asked for {0}, which this computer cannot offer.",
        Key::ButtonName => "Get help from {0}",
        Key::ButtonInstalledTitle => "Your support button is ready",
        Key::ButtonInstalled => {
            "Whenever you need help, open “{0}” from your applications menu or your desktop. A technician will be with you shortly."
        }
        Key::ButtonExpiredTitle => "This support button has expired",
        Key::ButtonExpired => {
            "This support button no longer works. You can still get help: open the support portal and follow the instructions there."
        }
        Key::OpenPortal => "Open the support portal",
        Key::AskInstallJump => {
            "{0} would like to install a jump client on this computer, so that they can connect again later without you being present. Do you agree?"
        }
        Key::AskInstallButton => {
            "{0} would like to put a support button on your desktop, so that you can ask for help again in one click. Do you agree?"
        }
        Key::InstalledJumpLine => "The jump client is installed.",
        Key::InstalledButtonLine => {
            "The support button is on your desktop and in your applications menu."
        }
        Key::InstallFailedLine => "Nothing was installed.",
        Key::SharingTitle => "● Screen shared – ",
    }
}

fn fr(key: Key) -> &'static str {
    match key {
        // "Support" is understood in French too and keeps the title the same everywhere.
        Key::WindowTitle => "{0} – Support",
        Key::DefaultTitle => "Lifeline Support",
        Key::Connecting => "Connexion à votre équipe d’assistance…",
        Key::TermsTitle => "Avant de commencer",
        Key::TermsSummary => {
            "Un technicien de {0} est prêt à vous aider.\n\nLe technicien ne peut voir ou faire que ce que vous autorisez. Vous pouvez mettre fin à la session à tout moment avec le bouton « Fin de la session »."
        }
        Key::ShowFullTerms => "Afficher les conditions complètes",
        Key::HideFullTerms => "Masquer les conditions complètes",
        Key::FullTerms => {
            "Conditions de cette session d’assistance\n\n\
1. Ce programme relie votre ordinateur au service d’assistance de votre organisation, par une connexion chiffrée, pour cette seule session.\n\n\
2. Le technicien ne peut ni voir votre écran, ni contrôler votre ordinateur, ni transférer de fichiers, ni exécuter de commandes sans votre accord, demandé à chaque fois. Vous pouvez retirer une autorisation à tout moment.\n\n\
3. La session, y compris la discussion, peut être enregistrée par votre organisation pour des raisons de qualité et de sécurité.\n\n\
4. Vous pouvez mettre fin à la session à tout moment avec le bouton « Fin de la session » ou en fermant cette fenêtre. Rien ne reste actif sur votre ordinateur ensuite.\n\n\
5. Ne communiquez pas de mot de passe dans la discussion, sauf si la politique de votre organisation le demande."
        }
        Key::Accept => "Accepter",
        Key::Decline => "Refuser",
        Key::Waiting => "En attente de votre technicien…",
        Key::QueuePosition => "Vous êtes numéro {0} dans la file d’attente",
        Key::KeepOpen => "Veuillez garder cette fenêtre ouverte.",
        Key::ConnectedWith => "Connecté avec {0}",
        Key::RepJoinedLine => "{0} a rejoint la session.",
        Key::RepLeftLine => "{0} a quitté la session.",
        Key::Technician => "Technicien",
        Key::You => "Vous",
        Key::Send => "Envoyer",
        Key::EndSession => "Fin de la session",
        Key::Reconnecting => "Connexion perdue, reconnexion en cours (tentative {0})…",
        Key::LinkRestored => "Connexion rétablie.",
        Key::EndedTitle => "Session terminée",
        Key::EndedByYou => "Vous avez mis fin à la session.",
        Key::EndedByRep => "Le technicien a mis fin à la session.",
        Key::EndedBySystem => "La session est terminée.",
        Key::RefusedTitle => "La session n’a pas pu démarrer",
        Key::ErrorTitle => "Un problème est survenu",
        Key::Close => "Fermer",
        Key::CloseHint => "Merci. Vous pouvez maintenant fermer cette fenêtre.",
        Key::RefusedVersion => {
            "Ce programme ne correspond pas à la version du boîtier d’assistance : téléchargez-le à nouveau depuis le portail d’assistance."
        }
        Key::RefusedTicketInvalid => {
            "Ce téléchargement n’est pas valable pour ce boîtier d’assistance : téléchargez à nouveau le programme depuis le portail d’assistance."
        }
        Key::RefusedTicketExpired => {
            "Ce téléchargement a expiré : demandez une nouvelle clé de session à votre technicien et téléchargez à nouveau le programme."
        }
        Key::RefusedTicketUsed => {
            "Ce téléchargement a déjà servi pour une session : demandez une nouvelle clé de session à votre technicien."
        }
        Key::RefusedSessionEnded => "Cette session est déjà terminée.",
        Key::RefusedTooManyAttempts => {
            "Trop de tentatives : patientez quelques minutes puis réessayez."
        }
        Key::RefusedBusy => {
            "L’équipe d’assistance est occupée pour le moment : réessayez dans quelques minutes."
        }
        Key::AskView => "{0} souhaite voir votre écran.",
        Key::AskControl => "{0} souhaite contrôler votre souris et votre clavier.",
        Key::AskClipboard => "{0} souhaite échanger du texte copié avec vous (le presse-papiers).",
        Key::AskFileTransfer => {
            "{0} souhaite transférer des fichiers depuis et vers votre ordinateur."
        }
        Key::AskSystemInfo => {
            "{0} souhaite consulter les informations de votre ordinateur (système, disques, programmes)."
        }
        Key::AskShell => {
            "{0} souhaite exécuter des commandes sur votre ordinateur, avec vos droits."
        }
        Key::AskElevatedShell => {
            "{0} souhaite exécuter des commandes en tant qu’administrateur. Votre ordinateur vous demandera alors le mot de passe administrateur."
        }
        Key::Allow => "Autoriser",
        Key::Deny => "Refuser",
        Key::AutoDeny => "Sans réponse, ce sera refusé dans {0} s.",
        Key::AskEndProcess => {
            "{0} souhaite arrêter le programme « {1} » (processus {2}) sur votre ordinateur. Le travail non enregistré dans ce programme peut être perdu."
        }
        Key::ProcessEndedLine => "Le programme {0} a reçu la demande de s’arrêter.",
        Key::ProcessKeptLine => "Le programme {0} n’a pas été arrêté.",
        Key::ActiveView => "{0} voit votre écran",
        Key::ActiveControl => "{0} peut contrôler votre ordinateur",
        Key::ActiveOther => "Vous avez autorisé {0}",
        Key::Stop => "Arrêter",
        Key::ShellOpen => "Un terminal de commandes est ouvert",
        Key::ShellOpenElevated => "Un terminal de commandes est ouvert (administrateur)",
        Key::CloseShell => "Le fermer",
        Key::ShellClosedLine => "Le terminal de commandes a été fermé.",
        Key::AskpassTitle => "Mot de passe administrateur",
        Key::AskpassText => {
            "Votre technicien demande à exécuter des commandes en tant qu'administrateur. Tapez votre mot de passe pour l'autoriser, ou Annuler pour refuser. Le mot de passe reste sur cet ordinateur."
        }
        Key::AskpassOk => "Autoriser",
        Key::AskpassCancel => "Annuler",
        Key::JumpAskTitle => "Demande d’assistance à distance",
        Key::JumpAskText => {
            "{0} de {1} souhaite se connecter à cet ordinateur. Rien ne se passe sans votre accord ; sans réponse d’ici une minute, la demande est refusée."
        }
        Key::JumpAllow => "Autoriser",
        Key::JumpDecline => "Refuser",
        Key::SendFile => "Envoyer un fichier…",
        Key::ChooseFile => "Choisissez un fichier à envoyer au technicien",
        Key::AllowOneFolder => "Autoriser un seul dossier…",
        Key::ChooseSharedFolder => "Choisissez le seul dossier que le technicien pourra utiliser",
        Key::SharedFolder => "Dossier partagé : {0}",
        Key::StopSharingFiles => "Arrêter le partage de fichiers",
        Key::PermView => "l’affichage de votre écran",
        Key::PermControl => "le contrôle à distance",
        Key::PermClipboard => "le partage du presse-papiers",
        Key::PermFileTransfer => "le transfert de fichiers",
        Key::PermSystemInfo => "l’accès aux informations système",
        Key::PermShell => "un terminal de commandes",
        Key::PermElevatedShell => "un terminal de commandes administrateur",
        Key::AllowedLine => "Vous avez autorisé {0}.",
        Key::DeniedLine => "Vous avez refusé {0}.",
        Key::TimedOutLine => "Sans réponse : {0} a été refusé.",
        Key::StoppedLine => "Vous avez arrêté {0}.",
        Key::UnavailableLine => {
            "Le technicien a demandé {0}, que cet ordinateur ne peut pas offrir."
        }
        Key::ButtonName => "Obtenir de l’aide de {0}",
        Key::ButtonInstalledTitle => "Votre bouton d’assistance est prêt",
        Key::ButtonInstalled => {
            "Quand vous avez besoin d’aide, ouvrez « {0} » depuis le menu des applications ou votre bureau. Un technicien s’occupera de vous rapidement."
        }
        Key::ButtonExpiredTitle => "Ce bouton d’assistance a expiré",
        Key::ButtonExpired => {
            "Ce bouton d’assistance ne fonctionne plus. Vous pouvez tout de même obtenir de l’aide : ouvrez le portail d’assistance et suivez les instructions."
        }
        Key::OpenPortal => "Ouvrir le portail d’assistance",
        Key::AskInstallJump => {
            "{0} souhaite installer un client d’accès sur cet ordinateur, pour pouvoir s’y reconnecter plus tard sans que vous soyez présent. Êtes-vous d’accord ?"
        }
        Key::AskInstallButton => {
            "{0} souhaite placer un bouton d’assistance sur votre bureau, pour que vous puissiez redemander de l’aide en un clic. Êtes-vous d’accord ?"
        }
        Key::InstalledJumpLine => "Le client d’accès est installé.",
        Key::InstalledButtonLine => {
            "Le bouton d’assistance est sur votre bureau et dans le menu des applications."
        }
        Key::InstallFailedLine => "Rien n’a été installé.",
        Key::SharingTitle => "● Écran partagé – ",
    }
}

fn de(key: Key) -> &'static str {
    match key {
        Key::WindowTitle => "{0} – Support",
        Key::DefaultTitle => "Lifeline-Support",
        Key::Connecting => "Verbindung zu Ihrem Support-Team wird hergestellt…",
        Key::TermsTitle => "Bevor es losgeht",
        Key::TermsSummary => {
            "Ein Techniker von {0} ist bereit, Ihnen zu helfen.\n\nDer Techniker kann nur sehen oder tun, was Sie erlauben. Sie können die Sitzung jederzeit mit der Schaltfläche „Sitzung beenden“ beenden."
        }
        Key::ShowFullTerms => "Vollständige Bedingungen anzeigen",
        Key::HideFullTerms => "Vollständige Bedingungen ausblenden",
        Key::FullTerms => {
            "Bedingungen dieser Support-Sitzung\n\n\
1. Dieses Programm verbindet Ihren Computer über eine verschlüsselte Verbindung mit dem Support Ihrer Organisation, nur für diese eine Sitzung.\n\n\
2. Der Techniker kann Ihren Bildschirm nicht sehen, Ihren Computer nicht steuern, keine Dateien übertragen und keine Befehle ausführen, solange Sie dies nicht jeweils auf Nachfrage erlauben. Sie können jede Erlaubnis jederzeit zurückziehen.\n\n\
3. Die Sitzung einschließlich des Chats kann von Ihrer Organisation aus Qualitäts- und Sicherheitsgründen aufgezeichnet werden.\n\n\
4. Sie können die Sitzung jederzeit mit der Schaltfläche „Sitzung beenden“ oder durch Schließen dieses Fensters beenden. Danach läuft nichts weiter auf Ihrem Computer.\n\n\
5. Geben Sie im Chat keine Passwörter weiter, es sei denn, die Richtlinien Ihrer Organisation verlangen es."
        }
        Key::Accept => "Akzeptieren",
        Key::Decline => "Ablehnen",
        Key::Waiting => "Warten auf Ihren Techniker…",
        Key::QueuePosition => "Sie sind Nummer {0} in der Warteschlange",
        Key::KeepOpen => "Bitte lassen Sie dieses Fenster geöffnet.",
        Key::ConnectedWith => "Verbunden mit {0}",
        Key::RepJoinedLine => "{0} ist der Sitzung beigetreten.",
        Key::RepLeftLine => "{0} hat die Sitzung verlassen.",
        Key::Technician => "Techniker",
        Key::You => "Sie",
        Key::Send => "Senden",
        Key::EndSession => "Sitzung beenden",
        Key::Reconnecting => "Verbindung unterbrochen, neuer Versuch ({0})…",
        Key::LinkRestored => "Verbindung wiederhergestellt.",
        Key::EndedTitle => "Sitzung beendet",
        Key::EndedByYou => "Sie haben die Sitzung beendet.",
        Key::EndedByRep => "Der Techniker hat die Sitzung beendet.",
        Key::EndedBySystem => "Die Sitzung wurde beendet.",
        Key::RefusedTitle => "Die Sitzung konnte nicht starten",
        Key::ErrorTitle => "Etwas ist schiefgelaufen",
        Key::Close => "Schließen",
        Key::CloseHint => "Vielen Dank. Sie können dieses Fenster jetzt schließen.",
        Key::RefusedVersion => {
            "Dieses Programm passt nicht zur Version der Support-Box: Laden Sie es erneut über das Support-Portal herunter."
        }
        Key::RefusedTicketInvalid => {
            "Dieser Download gilt nicht für diese Support-Box: Laden Sie das Programm erneut über das Support-Portal herunter."
        }
        Key::RefusedTicketExpired => {
            "Dieser Download ist abgelaufen: Bitten Sie Ihren Techniker um einen neuen Sitzungsschlüssel und laden Sie das Programm erneut herunter."
        }
        Key::RefusedTicketUsed => {
            "Dieser Download wurde bereits für eine Sitzung verwendet: Bitten Sie Ihren Techniker um einen neuen Sitzungsschlüssel."
        }
        Key::RefusedSessionEnded => "Diese Sitzung ist bereits beendet.",
        Key::RefusedTooManyAttempts => {
            "Zu viele Versuche: Warten Sie einige Minuten und versuchen Sie es dann erneut."
        }
        Key::RefusedBusy => {
            "Das Support-Team ist gerade beschäftigt: Bitte versuchen Sie es in einigen Minuten erneut."
        }
        Key::AskView => "{0} möchte Ihren Bildschirm sehen.",
        Key::AskControl => "{0} möchte Ihre Maus und Tastatur steuern.",
        Key::AskClipboard => {
            "{0} möchte kopierten Text mit Ihnen austauschen (die Zwischenablage)."
        }
        Key::AskFileTransfer => "{0} möchte Dateien von und zu Ihrem Computer übertragen.",
        Key::AskSystemInfo => {
            "{0} möchte Informationen über Ihren Computer lesen (System, Laufwerke, Programme)."
        }
        Key::AskShell => "{0} möchte Befehle auf Ihrem Computer mit Ihren Rechten ausführen.",
        Key::AskElevatedShell => {
            "{0} möchte Befehle als Administrator ausführen. Ihr Computer fragt dann nach dem Administratorpasswort."
        }
        Key::Allow => "Erlauben",
        Key::Deny => "Ablehnen",
        Key::AutoDeny => "Ohne Antwort wird dies in {0} s abgelehnt.",
        Key::AskEndProcess => {
            "{0} möchte das Programm „{1}“ (Prozess {2}) auf Ihrem Computer beenden. Ungespeicherte Arbeit darin kann verloren gehen."
        }
        Key::ProcessEndedLine => "Das Programm {0} wurde zum Beenden aufgefordert.",
        Key::ProcessKeptLine => "Das Programm {0} wurde nicht beendet.",
        Key::ActiveView => "{0} sieht Ihren Bildschirm",
        Key::ActiveControl => "{0} kann Ihren Computer steuern",
        Key::ActiveOther => "Sie haben {0} erlaubt",
        Key::Stop => "Beenden",
        Key::ShellOpen => "Eine Befehlszeile ist geöffnet",
        Key::ShellOpenElevated => "Eine Befehlszeile ist geöffnet (als Administrator)",
        Key::CloseShell => "Schließen",
        Key::ShellClosedLine => "Die Befehlszeile wurde geschlossen.",
        Key::AskpassTitle => "Administratorkennwort",
        Key::AskpassText => {
            "Ihr Techniker möchte Befehle als Administrator ausführen. Geben Sie Ihr Kennwort ein, um es zu erlauben, oder Abbrechen, um es abzulehnen. Das Kennwort bleibt auf diesem Computer."
        }
        Key::AskpassOk => "Erlauben",
        Key::AskpassCancel => "Abbrechen",
        Key::JumpAskTitle => "Anfrage für Fernsupport",
        Key::JumpAskText => {
            "{0} von {1} möchte sich mit diesem Computer verbinden. Ohne Ihre Zustimmung geschieht nichts; ohne Antwort innerhalb einer Minute wird die Anfrage abgelehnt."
        }
        Key::JumpAllow => "Erlauben",
        Key::JumpDecline => "Ablehnen",
        Key::SendFile => "Datei senden…",
        Key::ChooseFile => "Wählen Sie eine Datei für den Techniker aus",
        Key::AllowOneFolder => "Nur einen Ordner erlauben…",
        Key::ChooseSharedFolder => "Wählen Sie den einzigen Ordner, den der Techniker nutzen darf",
        Key::SharedFolder => "Freigegebener Ordner: {0}",
        Key::StopSharingFiles => "Dateifreigabe beenden",
        Key::PermView => "die Bildschirmansicht",
        Key::PermControl => "die Fernsteuerung",
        Key::PermClipboard => "die gemeinsame Zwischenablage",
        Key::PermFileTransfer => "die Dateiübertragung",
        Key::PermSystemInfo => "den Zugriff auf Systeminformationen",
        Key::PermShell => "eine Befehlszeile",
        Key::PermElevatedShell => "eine Befehlszeile als Administrator",
        Key::AllowedLine => "Sie haben {0} erlaubt.",
        Key::DeniedLine => "Sie haben {0} abgelehnt.",
        Key::TimedOutLine => "Keine Antwort: {0} wurde abgelehnt.",
        Key::StoppedLine => "Sie haben {0} beendet.",
        Key::UnavailableLine => {
            "Der Techniker hat {0} angefragt, was dieser Computer nicht anbieten kann."
        }
        Key::ButtonName => "Hilfe von {0} holen",
        Key::ButtonInstalledTitle => "Ihr Support-Knopf ist bereit",
        Key::ButtonInstalled => {
            "Wenn Sie Hilfe brauchen, öffnen Sie „{0}“ im Anwendungsmenü oder auf Ihrem Schreibtisch. Ein Techniker kümmert sich dann bald um Sie."
        }
        Key::ButtonExpiredTitle => "Dieser Support-Knopf ist abgelaufen",
        Key::ButtonExpired => {
            "Dieser Support-Knopf funktioniert nicht mehr. Sie bekommen trotzdem Hilfe: Öffnen Sie das Support-Portal und folgen Sie den Anweisungen dort."
        }
        Key::OpenPortal => "Support-Portal öffnen",
        Key::AskInstallJump => {
            "{0} möchte einen Zugangs-Client auf diesem Computer installieren, um sich später auch ohne Ihre Anwesenheit wieder verbinden zu können. Sind Sie einverstanden?"
        }
        Key::AskInstallButton => {
            "{0} möchte einen Support-Knopf auf Ihrem Schreibtisch anlegen, damit Sie mit einem Klick erneut Hilfe anfordern können. Sind Sie einverstanden?"
        }
        Key::InstalledJumpLine => "Der Zugangs-Client ist installiert.",
        Key::InstalledButtonLine => {
            "Der Support-Knopf liegt auf Ihrem Schreibtisch und im Anwendungsmenü."
        }
        Key::InstallFailedLine => "Es wurde nichts installiert.",
        Key::SharingTitle => "● Bildschirm geteilt – ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_in_every_language_is_non_empty() {
        for lang in Lang::ALL {
            let t = Texts::new(lang);
            for key in Key::ALL {
                assert!(!t.get(key).trim().is_empty(), "{lang:?} {key:?}");
            }
        }
    }

    #[test]
    fn translations_differ_where_they_should_and_keep_placeholders() {
        let (en, fr, de) = (
            Texts::new(Lang::En),
            Texts::new(Lang::Fr),
            Texts::new(Lang::De),
        );
        assert_eq!(fr.get(Key::EndSession), "Fin de la session");
        assert_eq!(de.get(Key::EndSession), "Sitzung beenden");
        for key in Key::ALL {
            let has = |t: &Texts| t.get(key).contains("{0}");
            assert_eq!(has(&en), has(&fr), "{key:?}");
            assert_eq!(has(&en), has(&de), "{key:?}");
        }
        assert_eq!(en.fmt(Key::QueuePosition, 3), "You are number 3 in line");
        assert_eq!(de.fmt(Key::ConnectedWith, "Jörg"), "Verbunden mit Jörg");
    }

    #[test]
    fn titles() {
        let en = Texts::new(Lang::En);
        assert_eq!(en.title("Example U"), "Example U – Support");
        assert_eq!(en.title("  "), "Lifeline Support");
        // Scripts find the window by "Support" in every language.
        for lang in Lang::ALL {
            assert!(Texts::new(lang).title("X").contains("Support"));
            assert!(Texts::new(lang).title("").contains("Support"));
        }
    }

    #[test]
    fn language_choice() {
        let env = Env::from_pairs([("LANG", "de_DE.UTF-8")]);
        assert_eq!(Lang::choose("fr", &env), Lang::Fr);
        assert_eq!(Lang::choose("es", &env), Lang::De);
        assert_eq!(Lang::choose("", &env), Lang::De);
        let env = Env::from_pairs([("LANG", "de_DE.UTF-8"), ("LC_ALL", "fr_CA")]);
        assert_eq!(Lang::choose("", &env), Lang::Fr);
        let env = Env::from_pairs([("LC_MESSAGES", "C"), ("LANG", "de_AT")]);
        assert_eq!(Lang::choose("", &env), Lang::En);
        assert_eq!(Lang::choose("", &Env::default()), Lang::En);
        assert_eq!(Lang::parse("DE-ch"), Some(Lang::De));
    }
}
