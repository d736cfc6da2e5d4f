// A profile's API path, its public page, and deleting it after a
// confirmation: shared by the list (profiles.js) and the editor.

import { announce } from './dom.js';
import { api } from './api.js';
import { PROFILE_BASE } from './config.js';
import { confirmDialog } from './confirm.js';
import { reportError } from './links.js';

export function profilePath(username) {
    return `/profiles/${encodeURIComponent(username)}`;
}

export function publicUrl(username) {
    return new URL(PROFILE_BASE + username, window.location.origin).href;
}

export async function deleteProfile(username) {
    const yes = await confirmDialog(`Delete @${username}?`,
        'The public page answers 404 at once. The username stays taken: '
        + 'it never leads to someone else\'s page.', 'Delete');
    if (!yes) {
        return false;
    }
    try {
        await api('DELETE', profilePath(username));
    } catch (e) {
        reportError(e, `@${username} could not be deleted:`);
        return false;
    }
    announce(`@${username} deleted`);
    return true;
}
