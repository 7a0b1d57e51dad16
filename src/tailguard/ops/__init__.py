"""Operations tools: chaos runs (:mod:`.chaos`), model profiles (:mod:`.profile`), capacity
plans (:mod:`.plan`) and their cost (:mod:`.cost`, :mod:`.prices`).

Import each from its module; the load generator they drive is :mod:`tailguard.load`.
"""
