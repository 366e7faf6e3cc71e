"""Template biographies (gender x occupation) with their word lists."""

from sklearn.utils import check_random_state

__all__ = ["BIOGRAPHY_OCCUPATIONS", "make_biographies"]


# ---------------------------------------------------------------------------
# Template biographies (gender x occupation), for concept erasure.

#: Occupations of :func:`make_biographies`, indexed by its ``occupation`` labels.
BIOGRAPHY_OCCUPATIONS = (
    "nurse",
    "software engineer",
    "teacher",
    "surgeon",
    "lawyer",
    "architect",
)

_FIRST_NAMES = (
    # female
    (
        "Mary", "Emma", "Olivia", "Sophia", "Anna", "Laura", "Sarah", "Julia",
        "Emily", "Grace", "Alice", "Clara", "Hannah", "Chloe", "Rachel", "Nora",
        "Lucy", "Helen", "Maria", "Eva",
    ),
    # male
    (
        "John", "James", "Michael", "David", "Daniel", "Thomas", "Paul", "Peter",
        "Mark", "Robert", "Henry", "Lucas", "George", "Samuel", "Adam", "Oliver",
        "Jack", "William", "Ethan", "Leo",
    ),
)  # fmt: skip

_LAST_NAMES = (
    "Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Martin", "Lee",
    "Walker", "Young", "King", "Wright", "Lopez", "Hill", "Green", "Baker",
)  # fmt: skip

# (subject, possessive, title) per gender: 0 female, 1 male
_PRONOUNS = (("she", "her", "Ms."), ("he", "his", "Mr."))

_DUTIES = {
    "nurse": (
        "cares for patients on the night shift",
        "works in the intensive care unit of a large hospital",
        "gives vaccines and checks on patients after surgery",
    ),
    "software engineer": (
        "writes code for a startup that builds mobile apps",
        "designs distributed databases and reviews pull requests",
        "maintains the backend services of an online shop",
    ),
    "teacher": (
        "teaches mathematics to twelve-year-olds",
        "prepares lessons and grades homework every evening",
        "runs the history class of a public high school",
    ),
    "surgeon": (
        "performs heart operations at the university hospital",
        "specialises in orthopaedic surgery on injured athletes",
        "spends long days in the operating room",
    ),
    "lawyer": (
        "defends clients in criminal trials",
        "drafts contracts for a corporate law firm",
        "argues cases before the court of appeals",
    ),
    "architect": (
        "designs energy-efficient houses and schools",
        "draws plans for new buildings in the city centre",
        "restores old churches and public libraries",
    ),
}

_CITIES = (
    "Boston", "Denver", "Seattle", "Chicago", "Austin", "Portland", "Atlanta",
    "Toronto", "Dublin", "Melbourne",
)  # fmt: skip

_HOBBIES = (
    "likes hiking in the mountains",
    "plays the piano",
    "reads science fiction",
    "runs marathons",
    "grows vegetables in a small garden",
    "volunteers at the local animal shelter",
    "collects old maps",
    "cooks for friends",
)

_TEMPLATES = (
    "{name} is {article} {occ} based in {city}. {Subj} {duty}. "
    "In {poss} free time {subj} {hobby}.",
    "{title} {last} works as {article} {occ} in {city}, where {subj} {duty}. "
    "Outside work {subj} {hobby}.",
    "Born in {city}, {name} became {article} {occ}. Today {subj} {duty}, and "
    "{subj} {hobby} with {poss} family.",
    "{name} has been {article} {occ} for ten years; {subj} {duty}. {Subj} also "
    "{hobby}.",
)


def make_biographies(n_samples=1000, *, random_state=None):
    """Template biographies labelled with a gender and an occupation.

    Each text names a person (a first name, or a title and a last name),
    refers to them with gendered pronouns, and describes one of
    :data:`BIOGRAPHY_OCCUPATIONS` with an occupation-specific duty, e.g.
    "Emma is a surgeon based in Denver. She performs heart operations at the
    university hospital. In her free time she plays the piano." Gender and
    occupation are drawn independently and uniformly, so removing the gender
    from an embedding of these texts need not cost any occupation accuracy.
    Text only: no model is called (see :func:`make_biography_embeddings`).

    Parameters
    ----------
    n_samples : int, default=1000
        Number of biographies.
    random_state : int, RandomState instance or None, default=None
        Seeds every choice.

    Returns
    -------
    texts : list of str of length n_samples
        The biographies.
    gender : ndarray of shape (n_samples,), int
        0 for a woman (she/her), 1 for a man (he/his).
    occupation : ndarray of shape (n_samples,), int
        Index into :data:`BIOGRAPHY_OCCUPATIONS`.

    Examples
    --------
    >>> from skconcepts.datasets import BIOGRAPHY_OCCUPATIONS, make_biographies
    >>> texts, gender, occupation = make_biographies(3, random_state=0)
    >>> len(texts), gender.shape, occupation.shape
    (3, (3,), (3,))
    >>> all(BIOGRAPHY_OCCUPATIONS[o] in t for t, o in zip(texts, occupation))
    True
    """
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
    rng = check_random_state(random_state)
    n = int(n_samples)
    gender = rng.randint(0, 2, size=n)
    occupation = rng.randint(0, len(BIOGRAPHY_OCCUPATIONS), size=n)
    texts = []
    for g, o in zip(gender, occupation, strict=True):
        occ = BIOGRAPHY_OCCUPATIONS[o]
        subj, poss, title = _PRONOUNS[g]
        first = _FIRST_NAMES[g][rng.randint(len(_FIRST_NAMES[g]))]
        template = _TEMPLATES[rng.randint(len(_TEMPLATES))]
        duties = _DUTIES[occ]
        texts.append(
            template.format(
                name=first,
                title=title,
                last=_LAST_NAMES[rng.randint(len(_LAST_NAMES))],
                article="an" if occ[0] in "aeiou" else "a",
                occ=occ,
                city=_CITIES[rng.randint(len(_CITIES))],
                duty=duties[rng.randint(len(duties))],
                hobby=_HOBBIES[rng.randint(len(_HOBBIES))],
                subj=subj,
                Subj=subj.capitalize(),
                poss=poss,
            )
        )
    return texts, gender, occupation
